"""Every Kafka topic Brigade uses, declared once, and the code that applies it.

``apply`` creates what is missing and reports drift (wrong partition count or config)
instead of silently ignoring it: a topic with too few partitions caps parallelism, one
with the wrong cleanup policy loses the event log.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from brigade.errors import KafkaError
from brigade.kafka.local import min_insync_replicas
from brigade.settings import LANES, Settings, tier_name

__all__ = ["ApplyReport", "TopicSpec", "Topology", "apply", "tier_name"]

PROCESSOR_TABLE = "jobs"


@dataclass(frozen=True, kw_only=True)
class TopicSpec:
    """One topic as it should exist."""

    name: str
    partitions: int
    replication: int
    config: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Topology:
    """Brigade's topic, consumer-group and changelog names, derived from settings."""

    settings: Settings

    @property
    def processor_group(self) -> str:
        """The job processor's consumer group (its Faust app id); the API watches its lag."""
        return f"{self.settings.kafka.topic_prefix}-processor"

    @property
    def processor_changelog(self) -> str:
        """The changelog of the processor's ``jobs`` table (Faust names it ``<app id>-<table>-changelog``)."""
        return f"{self.processor_group}-{PROCESSOR_TABLE}-changelog"

    @property
    def projector_group(self) -> str:
        """The projector's consumer group."""
        return f"{self.settings.kafka.topic_prefix}-projector"

    def worker_group(self, pools: Iterable[str]) -> str:
        """The consumer group (Faust app id) of the workers serving ``pools``; one per pool set."""
        return f"{self.worker_group_prefix}{'.'.join(sorted(set(pools)))}"

    @property
    def worker_group_prefix(self) -> str:
        """What every workers' group name starts with (the processors find them by it)."""
        return f"{self.settings.kafka.topic_prefix}-workers."

    @property
    def commands(self) -> str:
        """Client commands: submit, cancel."""
        return self.settings.topic("commands")

    @property
    def job_events(self) -> str:
        """The event log: every lifecycle transition, keyed by job id."""
        return self.settings.topic("job-events")

    @property
    def outcomes(self) -> str:
        """What workers report about attempts."""
        return self.settings.topic("outcomes")

    @property
    def dlq(self) -> str:
        """Dead letters: undecodable messages and jobs out of attempts."""
        return self.settings.topic("dlq")

    def work(self, pool: str, lane: str) -> str:
        """The work topic of one pool's lane."""
        return self.settings.topic(f"work.{pool}.{lane}")

    def retry(self, tier_seconds: float) -> str:
        """The delay topic of one retry tier."""
        return self.settings.topic(f"retry.{tier_name(tier_seconds)}")

    def retry_tiers(self) -> list[tuple[float, str]]:
        """``(seconds, topic)`` of every retry tier, shortest first."""
        return [(s, self.retry(s)) for s in sorted(self.settings.retry.tiers_s)]

    def specs(self) -> list[TopicSpec]:
        """Every topic with its partitions and config."""
        t = self.settings.topics
        # Replicated topics say how many replicas must have a write before it is acknowledged.
        isr = {"min.insync.replicas": str(min_insync_replicas(t.replication))} if t.replication > 1 else {}
        log = {"cleanup.policy": "delete", "retention.ms": str(t.events_retention_ms), **isr}
        work = {"cleanup.policy": "delete", "retention.ms": str(t.work_retention_ms), **isr}
        dlq = {"cleanup.policy": "delete", "retention.ms": str(t.dlq_retention_ms), **isr}
        specs = [
            TopicSpec(name=self.commands, partitions=t.partitions, replication=t.replication, config=log),
            TopicSpec(name=self.job_events, partitions=t.partitions, replication=t.replication, config=log),
            TopicSpec(name=self.outcomes, partitions=t.partitions, replication=t.replication, config=work),
            TopicSpec(name=self.dlq, partitions=1, replication=t.replication, config=dlq),
        ]
        specs += [
            TopicSpec(name=self.work(pool, lane), partitions=t.work_partitions,
                      replication=t.replication, config=work)
            for pool in self.settings.pools
            for lane in LANES
        ]
        specs += [
            TopicSpec(name=topic, partitions=t.retry_partitions, replication=t.replication, config=work)
            for _, topic in self.retry_tiers()
        ]
        return specs


@dataclass(frozen=True)
class ApplyReport:
    """What ``apply`` did: topics created, already fine, and drifted."""

    created: list[str]
    unchanged: list[str]
    drift: list[str]


def apply(admin: AdminClient, specs: Iterable[TopicSpec], *, timeout_s: float = 30.0) -> ApplyReport:
    """Create missing topics; report (never silently fix) partition or config drift."""
    specs = list(specs)
    existing = admin.list_topics(timeout=timeout_s).topics
    missing = [s for s in specs if s.name not in existing]
    _create(admin, missing, timeout_s)
    _await_visible(admin, [s.name for s in missing], timeout_s)
    present = [s for s in specs if s.name in existing]
    drift = _partition_drift(present, existing) + _config_drift(admin, present, timeout_s)
    drifted = {line.split(":")[0] for line in drift}
    unchanged = [s.name for s in present if s.name not in drifted]
    return ApplyReport([s.name for s in missing], unchanged, drift)


def _create(admin: AdminClient, specs: list[TopicSpec], timeout_s: float) -> None:
    if not specs:
        return
    new = [NewTopic(s.name, s.partitions, s.replication, config=s.config) for s in specs]
    for name, future in admin.create_topics(new, request_timeout=timeout_s).items():
        try:
            future.result()
        except KafkaException as exc:
            # Another process may have created it between list and create: that is fine.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise KafkaError(f"creating topic {name} failed: {exc}") from exc


def _await_visible(admin: AdminClient, names: list[str], timeout_s: float) -> None:
    # CreateTopics returns once the controller accepted them; brokers' metadata follows a
    # moment later. Callers (and the next apply) must see what was just created.
    deadline = time.monotonic() + timeout_s
    while names:
        visible = admin.list_topics(timeout=timeout_s).topics
        names = [n for n in names if n not in visible or not visible[n].partitions]
        if names and time.monotonic() > deadline:
            raise KafkaError(f"created topics not visible after {timeout_s}s: {', '.join(names)}")
        if names:
            time.sleep(0.05)


def _partition_drift(specs: list[TopicSpec], existing: Mapping[str, Any]) -> list[str]:
    drift = []
    for spec in specs:
        actual = len(existing[spec.name].partitions)
        if actual != spec.partitions:
            drift.append(f"{spec.name}: {actual} partitions, topology says {spec.partitions}")
    return drift


def _config_drift(admin: AdminClient, specs: list[TopicSpec], timeout_s: float) -> list[str]:
    if not specs:
        return []
    resources = [ConfigResource(ConfigResource.Type.TOPIC, s.name) for s in specs]
    futures = admin.describe_configs(resources, request_timeout=timeout_s)
    wanted = {s.name: s.config for s in specs}
    drift = []
    for resource, future in futures.items():
        actual = future.result()
        for key, value in wanted[resource.name].items():
            have = actual[key].value if key in actual else None
            if have != value:
                drift.append(f"{resource.name}: {key}={have}, topology says {value}")
    return drift
