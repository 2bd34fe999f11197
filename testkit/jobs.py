"""Builders shared by the processor tests: specs, commands, outcomes, a pure policy."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from brigade.ids import job_id, payload_sha256
from brigade.settings import PoolSettings, RetrySettings, RouteRule, Settings
from processors.decisions import Policy
from schemas.records import CancelJob, JobSpec, RetryTimer, SubmitJob, WorkOutcome

T0 = datetime(2026, 1, 1, tzinfo=UTC)


def pools() -> dict[str, PoolSettings]:
    """Two pools: ``big`` falls back to ``small``."""
    return {
        "small": PoolSettings(model="all-MiniLM-L6-v2", endpoint="http://127.0.0.1:1"),
        "big": PoolSettings(model="big-model", endpoint="http://127.0.0.1:2", fallback="small"),
    }


def pure_settings(**overrides: Any) -> Settings:
    """Settings for pure tests (no broker is contacted)."""
    values: dict[str, Any] = {
        "pools": pools(),
        "default_pool": "small",
        "routes": [RouteRule(pool="big", long_context=True)],
        "retry": RetrySettings(base_s=0.5, cap_s=60, max_attempts_limit=5, lease_s=30),
    }
    values.update(overrides)
    return Settings(**values)


def policy(**overrides: Any) -> Policy:
    """The pure decision policy for ``pure_settings``."""
    return Policy.from_settings(pure_settings(**overrides))


def spec(text: str = "hello", *, tenant: str = "acme", key: str | None = None,
         **fields: Any) -> JobSpec:
    """A job spec whose id is derived like ingress derives it."""
    digest = payload_sha256({"input": text})
    return JobSpec(
        job_id=job_id(tenant, key, digest), tenant_id=tenant, payload_sha256=digest,
        created_at=fields.pop("created_at", T0), idempotency_key=key,
        input=f'"{text}"', **fields,
    )


def submit(s: JobSpec) -> SubmitJob:
    """A submit command for ``s``."""
    return SubmitJob(command_id=str(uuid.uuid4()), spec=s)


def cancel(s: JobSpec, at: datetime = T0) -> CancelJob:
    """A cancel command for ``s``."""
    return CancelJob(command_id=str(uuid.uuid4()), job_id=s.job_id, tenant_id=s.tenant_id,
                     requested_at=at, reason="test")


def outcome(s: JobSpec, kind: str, attempt: int = 1, *, at: datetime = T0,
            **fields: Any) -> WorkOutcome:
    """A worker outcome for ``s``."""
    return WorkOutcome(
        outcome_id=f"{s.job_id}:{attempt}:{kind}:{fields.get('callback_attempt', 0)}",
        job_id=s.job_id, tenant_id=s.tenant_id, attempt=attempt, kind=kind,  # type: ignore[arg-type]
        occurred_at=at, worker="w1", **fields,
    )


def timer(s: JobSpec, attempt: int, due: datetime, tier: str = "1s") -> RetryTimer:
    """A retry timer (or, with ``tier="check"``, a lease/deadline check)."""
    return RetryTimer(job_id=s.job_id, tenant_id=s.tenant_id, attempt=attempt, due_at=due, tier=tier)


def later(seconds: float) -> datetime:
    """``T0`` plus ``seconds``."""
    return T0 + timedelta(seconds=seconds)
