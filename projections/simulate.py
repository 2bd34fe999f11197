"""Generated, legal job histories: test fixtures and benchmark load for the projections.

Each job follows one scripted path (success, retry then success, rate-limited retry,
dead letter, cancellation) with deterministic event ids and timings drawn from a seeded
RNG, so a test knows exactly what the projections must say about it.
"""

from __future__ import annotations

import random
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Literal

from brigade.ids import event_id
from brigade.status import ErrorClass
from schemas import records as r

Path = Literal["succeeded", "retried", "rate_limited", "dead_lettered", "cancelled"]
PATHS: tuple[Path, ...] = ("succeeded", "retried", "rate_limited", "dead_lettered", "cancelled")


@dataclass
class _Script:
    """Emits one job's events with increasing sequence and time."""

    job_id: str
    tenant_id: str
    at: datetime
    rng: random.Random
    sequence: int = 0

    def envelope(self, transition: str, attempt: int = 0, gap_ms: float = 1.0) -> r.Envelope:
        self.sequence += 1
        self.at += timedelta(milliseconds=gap_ms)
        return r.Envelope(
            event_id=event_id(self.job_id, transition, attempt), job_id=self.job_id,
            tenant_id=self.tenant_id, occurred_at=self.at, sequence=self.sequence,
        )


def job_events(
    job_id: str, *, tenant_id: str, pool: str, model: str, path: Path, start: datetime, seed: int = 0
) -> list[r.LifecycleEvent]:
    """The lifecycle events of one job that takes ``path``, in order."""
    s = _Script(job_id, tenant_id, start, random.Random(f"{seed}:{job_id}"))
    spec = r.JobSpec(job_id=job_id, tenant_id=tenant_id, payload_sha256="0" * 64, created_at=start,
                     model_hint=model, input='"hello"', priority="batch", max_attempts=2)
    events: list[r.LifecycleEvent] = [r.JobSubmitted(envelope=s.envelope("submitted"), spec=spec)]
    attempts = 2 if path in ("retried", "rate_limited", "dead_lettered") else 1
    for attempt in range(1, attempts + 1):
        events += _attempt_start(s, attempt, pool, model)
        if attempt < attempts:
            events += _retry(s, attempt, rate_limited=path == "rate_limited")
    events += _ending(s, attempts, model, path)
    return events


def _attempt_start(s: _Script, attempt: int, pool: str, model: str) -> list[r.LifecycleEvent]:
    reason = "submitted" if attempt == 1 else "retry"
    queued = r.JobQueued(envelope=s.envelope("queued", attempt, 2.0), pool=pool, lane="batch",
                         model=model, attempt=attempt, reason=reason)
    lease = s.at + timedelta(seconds=60)
    started = r.JobStarted(envelope=s.envelope("started", attempt, s.rng.uniform(5, 50)), attempt=attempt,
                           worker="w1", lease_deadline=lease, batch_id=f"b{attempt}", model=model)
    return [queued, started]


def _retry(s: _Script, attempt: int, *, rate_limited: bool) -> list[r.LifecycleEvent]:
    # As the processor does: a retryable failure is one JobRetryScheduled for the next attempt.
    reason = "HTTP 429: rate limited" if rate_limited else "timeout"
    envelope = s.envelope("retry_scheduled", attempt, s.rng.uniform(10, 100))
    return [r.JobRetryScheduled(envelope=envelope, attempt=attempt + 1, delay_ms=1000, reason=reason,
                                due_at=s.at + timedelta(seconds=1), tier="1s",
                                retry_after_ms=1000 if rate_limited else None)]


def _ending(s: _Script, attempt: int, model: str, path: Path) -> list[r.LifecycleEvent]:
    if path == "dead_lettered":
        failed = r.JobFailed(envelope=s.envelope("failed", attempt, s.rng.uniform(10, 100)),
                             attempt=attempt, reason="max_attempts_exhausted: bad input",
                             error_class=ErrorClass.PERMANENT, terminal=True)
        dead = r.JobDeadLettered(envelope=s.envelope("dead_lettered", attempt), attempts=attempt,
                                 reason="max_attempts_exhausted", errors=["timeout", "bad input"])
        return [failed, dead]
    if path == "cancelled":
        requested = r.JobCancelRequested(envelope=s.envelope("cancel-requested", attempt), reason="user")
        return [requested, r.JobCancelled(envelope=s.envelope("cancelled", attempt), reason="user")]
    latency = round(s.rng.uniform(5, 80), 3)
    return [r.JobSucceeded(envelope=s.envelope("succeeded", attempt, latency + 1), attempt=attempt,
                           model=model, latency_ms=latency, result_inline='{"embedding":[0.1]}',
                           result_size=20, batch_size=s.rng.randint(1, 32))]


def stream(
    jobs: int, *, tenants: Sequence[str] = ("acme", "globex"), pools: Sequence[str] = ("default",),
    model: str = "all-MiniLM-L6-v2", start: datetime | None = None, seed: int = 0,
    paths: Sequence[Path] = PATHS, spacing_ms: float = 10.0,
) -> list[r.LifecycleEvent]:
    """Events of ``jobs`` jobs interleaved in time order; job ``i`` takes ``paths[i % len]``."""
    start = start or datetime(2026, 1, 1, tzinfo=UTC)
    events: list[r.LifecycleEvent] = []
    for index in range(jobs):
        events += job_events(
            f"job-{seed}-{index:07d}", tenant_id=tenants[index % len(tenants)],
            pool=pools[index % len(pools)], model=model, path=paths[index % len(paths)],
            start=start + timedelta(milliseconds=index * spacing_ms), seed=seed,
        )
    events.sort(key=lambda e: (e.envelope.occurred_at, e.envelope.job_id, e.envelope.sequence))
    return events


def circuit_opened(pool: str, model: str, at: datetime) -> r.CircuitOpened:
    """A breaker-opened event for ``pool``/``model``."""
    return r.CircuitOpened(event_id=event_id(f"circuit:{pool}:{model}", "opened", 0, at.isoformat()),
                           occurred_at=at, pool=pool, model=model, worker="w1", reason="5 failures",
                           failures=5)


def key_of(event: r.LifecycleEvent | r.CircuitEvent) -> bytes:
    """The Kafka key of an event on job-events: its job id, or ``circuit:<pool>:<model>``."""
    if isinstance(event, r.CircuitOpened | r.CircuitHalfOpened | r.CircuitClosed):
        return f"circuit:{event.pool}:{event.model}".encode()
    return event.envelope.job_id.encode()


def by_job(events: Iterable[r.LifecycleEvent]) -> dict[str, list[r.LifecycleEvent]]:
    """Events grouped by job id, each job's in order."""
    grouped: dict[str, list[r.LifecycleEvent]] = {}
    for event in events:
        grouped.setdefault(event.envelope.job_id, []).append(event)
    return grouped
