"""Brigade's settings: one object per deployable, read once at the entry point.

Values come from (highest first) keyword arguments, ``BRIGADE_*`` environment variables
(nested with ``__``, e.g. ``BRIGADE_KAFKA__BOOTSTRAP``), ``brigade.toml`` in the working
directory (or the file named by ``BRIGADE_CONFIG``), then the defaults below. Nothing
below the entry point reads the environment: the object is passed explicitly.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, Field, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

Lane = Literal["interactive", "batch"]
LANES: tuple[Lane, ...] = ("interactive", "batch")
ModelBackend = Literal["onnx", "torch"]


class KafkaSettings(BaseModel):
    """How Brigade reaches Kafka, and how the embedded broker runs."""

    bootstrap: str = "127.0.0.1:9092"
    topic_prefix: str = "brigade"
    client_id: str = "brigade"
    # The embedded broker (``brigade kafka start``); ignored against a real cluster.
    broker_port: int = 9092
    controller_port: int = 9093
    broker_heap: str = "512m"
    # More than one runs a replicated cluster (``brigade.kafka.cluster``): node i listens on
    # broker_port + 2i; bootstrap and the topics' replication follow unless set.
    brokers: int = Field(default=1, ge=1, le=9)
    # Every consumer group member's session: a member that dies without leaving (SIGKILL)
    # holds its partitions this long, unless restarted under its static name (``--instance``).
    # Faust requires it below its 90 s request timeout; brokers refuse less than 6 s.
    session_timeout_s: float = Field(default=10.0, ge=6.0, le=90.0)


class TopicSettings(BaseModel):
    """Partitions, replication and retention for the topology."""

    partitions: int = Field(default=6, ge=1)
    work_partitions: int = Field(default=6, ge=1)
    retry_partitions: int = Field(default=3, ge=1)
    replication: int = Field(default=1, ge=1)
    # The event log is the truth: keep it forever unless an operator says otherwise.
    events_retention_ms: int = -1
    work_retention_ms: int = 7 * 24 * 3600 * 1000
    dlq_retention_ms: int = 30 * 24 * 3600 * 1000


class LaneSettings(BaseModel):
    """Batching policy of one lane of a pool."""

    max_batch_size: int = Field(default=32, ge=1)
    max_delay_ms: int = Field(default=10, ge=0)
    token_budget: int = Field(default=16384, ge=1)
    # Close a batch at once when none of the lane's batches is running or waiting: the
    # window then only gathers items that arrive while the model is busy. On for the
    # interactive lane (latency); off for the batch lane, whose larger batches are its point.
    close_when_idle: bool = False


class PoolSettings(BaseModel):
    """A pool of workers serving one model endpoint."""

    model: str
    endpoint: str
    kind: Literal["builtin", "openai-embeddings", "openai-chat", "openai-completions"] = (
        "openai-embeddings"
    )
    api_key: str | None = None
    fallback: str | None = None
    max_concurrency: int = Field(default=4, ge=1)
    timeout_s: float = Field(default=30.0, gt=0)
    # Post-processing steps run on each result, in order ("l2_normalize", "truncate:256",
    # "json_extract", or a name registered under the ``brigade.postprocess`` entry point
    # group); None picks the kind's default (l2_normalize for embeddings, none otherwise).
    postprocess: list[str] | None = None
    # Circuit breaker of the pool's endpoint: opens after this many consecutive failures,
    # lets a probe through after the reset timeout.
    breaker_failures: int = Field(default=5, ge=1)
    breaker_reset_s: float = Field(default=10.0, gt=0)
    # Longest pause of the pool's model calls after a 429, whatever its Retry-After says
    # (a bogus "Retry-After: 86400" must not stall the pool for a day).
    retry_after_cap_s: float = Field(default=60.0, gt=0)
    # A model call still running after this long has its items' `started` outcomes
    # published then; a call that ends sooner reports each start with the item's final
    # outcome instead (one record and one processor decision fewer per job; JobStarted is
    # still written, at the call's start time). 0 publishes `started` as every call begins.
    announce_start_after_ms: int = Field(default=250, ge=0)
    interactive: LaneSettings = LaneSettings(max_batch_size=16, max_delay_ms=5, close_when_idle=True)
    batch: LaneSettings = LaneSettings(max_batch_size=64, max_delay_ms=200, token_budget=65536)

    def lane(self, lane: Lane) -> LaneSettings:
        """Return the batching policy of ``lane``."""
        return self.interactive if lane == "interactive" else self.batch


class BuiltinModelSettings(BaseModel):
    """The built-in all-MiniLM-L6-v2 (``brigade model-server`` and pools of kind ``builtin``)."""

    # onnx: int8 on onnxruntime, CPU, the default install. torch: fp32 through
    # sentence-transformers, on CUDA when present (needs the 'torch' extra: make deps MODEL=torch).
    backend: ModelBackend = "onnx"
    # Intra-op threads of the backend; None lets it choose (one per core).
    threads: int | None = Field(default=None, ge=1)
    # Most texts the model server puts in one model call.
    max_batch_size: int = Field(default=64, ge=1)


class RouteRule(BaseModel):
    """One routing rule; every given field must match. First matching rule wins."""

    pool: str
    lane: Lane | None = None
    priority: Literal["interactive", "batch"] | None = None
    tenant: str | None = None
    model_hint: str | None = None
    long_context: bool | None = None
    batchable: bool | None = None


RETRY_TIER_NAMES = {1.0: "1s", 5.0: "5s", 30.0: "30s", 120.0: "2m", 600.0: "10m"}


def tier_name(seconds: float) -> str:
    """The name of a retry tier (``1s``, ``2m``...): its topic suffix and its events' ``tier``."""
    known = RETRY_TIER_NAMES.get(seconds)
    if known is not None:
        return known
    return f"{int(seconds // 60)}m" if seconds >= 60 and seconds % 60 == 0 else f"{seconds:g}s"


class RetrySettings(BaseModel):
    """Backoff policy for retries through the delay tiers."""

    base_s: float = Field(default=0.5, gt=0)
    cap_s: float = Field(default=600.0, gt=0)
    retry_after_cap_s: float = Field(default=600.0, gt=0)
    tiers_s: tuple[float, ...] = (1.0, 5.0, 30.0, 120.0, 600.0)
    default_max_attempts: int = Field(default=3, ge=1)
    max_attempts_limit: int = Field(default=10, ge=1)
    lease_s: float = Field(default=60.0, gt=0)
    lease_check_interval_s: float = Field(default=1.0, gt=0)
    # Schedule-to-start: a dispatched job whose work item has not started after this long
    # is dispatched again as a new attempt (its message may have been lost or stranded).
    dispatch_timeout_s: float = Field(default=300.0, gt=0)
    # The dispatch timeout runs only once the workers have read past the item on its work
    # partition (an attempt dispatched no earlier has started): a backlog holds it, up to
    # this long after dispatch (a partition with no later traffic, a restarted processor).
    dispatch_backlog_max_s: float = Field(default=1800.0, gt=0)
    # A job waiting for its retry timer is dispatched without it once the retry is this
    # overdue (the timer may have been lost on its delay topic).
    retry_timer_grace_s: float = Field(default=60.0, gt=0)


class ApiSettings(BaseModel):
    """The HTTP ingress."""

    host: str = "127.0.0.1"
    port: int = 8000
    max_body_bytes: int = 1024 * 1024
    max_wait_s: float = 30.0
    lag_soft_limit: int = 50_000
    lag_hard_limit: int = 200_000
    tenants_file: Path | None = None
    # Connections plus in-flight requests per API process before uvicorn answers 503.
    limit_concurrency: int = Field(default=2048, ge=1)
    backlog: int = Field(default=1024, ge=1)
    timeout_keep_alive_s: int = Field(default=5, ge=1)
    # Concurrent ?wait= requests per tenant and per API process (429 beyond either).
    max_waits_per_tenant: int = Field(default=500, ge=1)
    max_waits: int = Field(default=2000, ge=1)
    # Job states the embedded projector inserted, kept for status reads (0: every read asks
    # ClickHouse); ~0.5 KB each, see docs/projections.md "Status reads from memory".
    status_cache_jobs: int = Field(default=100_000, ge=0)
    # Larger inline results are not held in memory; reads of them go to ClickHouse.
    status_cache_inline_max: int = Field(default=1024, ge=0)


class CallbackSettings(BaseModel):
    """Signed job callbacks (workers POST a job's final state to its ``callbackUrl``)."""

    # tenant id -> HMAC-SHA256 secret; tenants not listed get HMAC(secret_key, tenant id).
    secrets: dict[str, str] = Field(default_factory=dict)
    secret_key: str | None = None
    # Tenants whose callbacks may target loopback or private addresses; everyone else's
    # are refused at delivery on the resolved address. allow_private lifts the guard for
    # every tenant (a deployment whose receivers all sit on a private network).
    private_tenants: list[str] = Field(default_factory=lambda: ["dev"])
    allow_private: bool = False
    max_attempts: int = Field(default=5, ge=1)
    backoff_base_s: float = Field(default=0.5, gt=0)
    backoff_cap_s: float = Field(default=30.0, gt=0)
    timeout_s: float = Field(default=10.0, gt=0)


class Settings(BaseSettings):
    """Everything a Brigade process needs to know, validated at start-up."""

    model_config = SettingsConfigDict(
        env_prefix="BRIGADE_",
        env_nested_delimiter="__",
        extra="forbid",
    )

    data_dir: Path = Path(".brigade")
    kafka: KafkaSettings = KafkaSettings()
    topics: TopicSettings = TopicSettings()
    clickhouse_url: str = "chdb://.brigade/clickhouse"
    object_store_url: str = "file://.brigade/objects"
    inline_threshold_bytes: int = Field(default=64 * 1024, ge=1)
    # The largest payload the API stores and a worker reads back (reads stop past it).
    max_payload_bytes: int = Field(default=1024 * 1024, ge=1)
    # Bytes of stored payloads one tenant may keep in the object store (POST /v1/payloads).
    payload_quota_bytes: int = Field(default=1024 * 1024 * 1024, ge=0)
    retry: RetrySettings = RetrySettings()
    api: ApiSettings = ApiSettings()
    callbacks: CallbackSettings = CallbackSettings()
    pools: dict[str, PoolSettings] = Field(
        default_factory=lambda: {
            "default": PoolSettings(
                model="all-MiniLM-L6-v2",
                endpoint="http://127.0.0.1:8100",
                kind="openai-embeddings",
            )
        }
    )
    routes: list[RouteRule] = Field(default_factory=list)
    builtin_model: BuiltinModelSettings = BuiltinModelSettings()
    default_pool: str | None = "default"
    # Processes without an HTTP server of their own (processors, workers, projector) serve
    # Prometheus metrics here; 0 turns it off.
    metrics_port: int = Field(default=0, ge=0, le=65535)
    metrics_host: str = "127.0.0.1"
    # The ports ``brigade up`` gives its processors and workers for ``metrics_port``; two
    # stacks on one machine (tests, benchmarks) must set their own. 0 turns one off.
    processors_metrics_port: int = Field(default=9101, ge=0, le=65535)
    workers_metrics_port: int = Field(default=9102, ge=0, le=65535)
    # The longest a job processor gathers inputs into one batch while they keep arriving;
    # a batch closes sooner when nothing more is buffered (``brigade.kafka.take``).
    processors_batch_window_ms: float = Field(default=5.0, gt=0)

    @field_validator("pools")
    @classmethod
    def _pool_names_are_topic_safe(cls, pools: dict[str, PoolSettings]) -> dict[str, PoolSettings]:
        for name in pools:
            if not name or not all(c.isalnum() or c in "-_" for c in name):
                raise ValueError(f"pools.{name}: pool names may use letters, digits, '-' and '_'")
        return pools

    @model_validator(mode="after")
    def _cluster_defaults_follow_brokers(self) -> Settings:
        k = self.kafka
        if k.brokers == 1:
            return self
        if "bootstrap" not in k.model_fields_set:
            nodes = ",".join(f"127.0.0.1:{k.broker_port + 2 * i}" for i in range(k.brokers))
            self.kafka = k.model_copy(update={"bootstrap": nodes})
        if "replication" not in self.topics.model_fields_set:
            self.topics = self.topics.model_copy(update={"replication": min(3, k.brokers)})
        return self

    @model_validator(mode="after")
    def _references_resolve(self) -> Settings:
        for name, pool in self.pools.items():
            if pool.fallback is not None and pool.fallback not in self.pools:
                raise ValueError(f"pools.{name}.fallback names unknown pool {pool.fallback!r}")
        for index, rule in enumerate(self.routes):
            if rule.pool not in self.pools:
                raise ValueError(f"routes[{index}].pool names unknown pool {rule.pool!r}")
        if self.default_pool is not None and self.default_pool not in self.pools:
            raise ValueError(f"default_pool names unknown pool {self.default_pool!r}")
        return self

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The entry point is the one place allowed to look at the environment.
        toml_path = Path(os.environ.get("BRIGADE_CONFIG", "brigade.toml"))
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_path),
        )

    def topic(self, name: str) -> str:
        """Full topic name for a logical name such as ``job-events``."""
        return f"{self.kafka.topic_prefix}.{name}"

    def path(self, *parts: str) -> Path:
        """A path under the data directory."""
        return self.data_dir.joinpath(*parts)
