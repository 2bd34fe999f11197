"""The read side's fold: the processor's state machine plus what the read side measures.

``advance`` folds one lifecycle event with ``processors.lifecycle.apply`` (the same state
machine the job processor runs, so a replay and the processor cannot disagree on a
job's fate) and keeps beside the processor's ``Job`` the timestamps the projections
need: when the job was queued, started and finished. From those it derives each
event's measures (time in queue, processing time, end-to-end time), which the rollups
aggregate. Pure: no I/O, tested without Kafka or ClickHouse.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from brigade.errors import Skip
from processors.lifecycle import Job, apply
from projections.readmodel import JobState
from schemas import records as r

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Tracked:
    """One job as the read side knows it: the processor's ``Job`` and its timings."""

    job: Job
    last_event: str
    queued_at: datetime | None = None
    started_at: datetime | None = None
    finished_at: datetime | None = None
    error_class: str = ""

    @property
    def status(self) -> JobState:
        """The job's public state."""
        return self.job.status

    @property
    def created_at(self) -> datetime:
        """When the client created the job (the spec's time)."""
        job = self.job
        return job.created_at or job.updated_at or _EPOCH

    @property
    def updated_at(self) -> datetime:
        """When the job's last event happened."""
        return self.job.updated_at or self.created_at


@dataclass(frozen=True, slots=True)
class Measures:
    """What one event tells the rollups; ``None`` where the event says nothing."""

    attempt: int = 0
    reason: str = ""
    error_class: str = ""
    terminal: bool = False
    rate_limited: bool = False
    queue_ms: float | None = None
    processing_ms: float | None = None
    latency_ms: float | None = None
    total_ms: float | None = None
    batch_size: int | None = None
    delay_ms: float | None = None
    model: str = ""


def advance(tracked: Tracked | None, event: r.LifecycleEvent) -> tuple[Tracked, Measures]:
    """Fold ``event`` into ``tracked``; return the new state and the event's measures.

    Raises:
        Skip: the event is a duplicate (its sequence is not past the job's).
        processors.lifecycle.IllegalTransition: the state machine refuses the event.
    """
    envelope = event.envelope
    if tracked is not None and envelope.sequence <= tracked.job.sequence:
        raise Skip()
    job = apply(tracked.job if tracked is not None else None, event)
    if tracked is None:
        tracked = Tracked(job=job, last_event="")
    handler = _HANDLERS.get(type(event), _no_change)
    changes, measures = handler(tracked, event)
    # Built directly: dataclasses.replace costs several times more on this hot path.
    get = changes.get
    new = Tracked(
        job, type(event).__name__, get("queued_at", tracked.queued_at), get("started_at", tracked.started_at),
        get("finished_at", tracked.finished_at), get("error_class", tracked.error_class),
    )
    return new, measures


def fold_events(events: Iterable[r.LifecycleEvent]) -> Tracked | None:
    """Fold a job's events from nothing, skipping duplicates; None for no events."""
    tracked: Tracked | None = None
    for event in events:
        try:
            tracked, _ = advance(tracked, event)
        except Skip:
            continue
    return tracked


def _ms(later: datetime, earlier: datetime | None) -> float | None:
    if earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


_Result = tuple[dict[str, Any], Measures]
_Handler = Callable[[Tracked, Any], _Result]


def _no_change(tracked: Tracked, event: Any) -> _Result:
    return {}, Measures(attempt=int(getattr(event, "attempt", 0) or 0))


def _queued(tracked: Tracked, event: r.JobQueued) -> _Result:
    changes = {"queued_at": event.envelope.occurred_at, "started_at": None}
    return changes, Measures(attempt=event.attempt, reason=event.reason, model=event.model)


def _started(tracked: Tracked, event: r.JobStarted) -> _Result:
    at = event.envelope.occurred_at
    measures = Measures(attempt=event.attempt, queue_ms=_ms(at, tracked.queued_at), model=event.model)
    return {"started_at": at}, measures


def _succeeded(tracked: Tracked, event: r.JobSucceeded) -> _Result:
    at = event.envelope.occurred_at
    changes = {"finished_at": at, "error_class": ""}
    measures = Measures(
        attempt=event.attempt,
        terminal=True,
        model=event.model,
        latency_ms=event.latency_ms,
        batch_size=event.batch_size,
        processing_ms=_ms(at, tracked.started_at),
        total_ms=_ms(at, tracked.created_at),
    )
    return changes, measures


def _failed(tracked: Tracked, event: r.JobFailed) -> _Result:
    at = event.envelope.occurred_at
    changes: dict[str, Any] = {"error_class": event.error_class}
    if event.terminal:
        changes["finished_at"] = at
    measures = Measures(
        attempt=event.attempt,
        reason=event.reason,
        error_class=event.error_class,
        terminal=event.terminal,
        rate_limited=is_rate_limited(event.error_class, event.reason),
        processing_ms=_ms(at, tracked.started_at),
        total_ms=_ms(at, tracked.created_at) if event.terminal else None,
    )
    return changes, measures


def _retry_scheduled(tracked: Tracked, event: r.JobRetryScheduled) -> _Result:
    # A 429 is counted once: on the failure when the processor reported one, else here.
    counted = tracked.last_event == "JobFailed" and is_rate_limited(
        tracked.error_class, tracked.job.last_error or ""
    )
    limited = not counted and (event.retry_after_ms is not None or is_rate_limited("", event.reason))
    measures = Measures(
        attempt=event.attempt, reason=event.reason, delay_ms=float(event.delay_ms), rate_limited=limited
    )
    return {"started_at": None}, measures


def _dead_lettered(tracked: Tracked, event: r.JobDeadLettered) -> _Result:
    at = event.envelope.occurred_at
    changes = {"finished_at": at}
    measures = Measures(
        attempt=event.attempts, reason=event.reason, terminal=True, total_ms=_ms(at, tracked.created_at)
    )
    return changes, measures


def _cancel_requested(tracked: Tracked, event: r.JobCancelRequested) -> _Result:
    return {}, Measures(reason=event.reason or "")


def _cancelled(tracked: Tracked, event: r.JobCancelled) -> _Result:
    at = event.envelope.occurred_at
    changes = {"finished_at": at}
    return changes, Measures(reason=event.reason or "", terminal=True, total_ms=_ms(at, tracked.created_at))


def _lease_expired(tracked: Tracked, event: r.JobLeaseExpired) -> _Result:
    return {"started_at": None}, Measures(attempt=event.attempt, reason="lease expired")


def _rejected(tracked: Tracked, event: r.JobRejected) -> _Result:
    return {}, Measures(reason=event.reason)


def is_rate_limited(error_class: str, reason: str) -> bool:
    """Whether a failure was the model service answering 429 (the one place that decides)."""
    return error_class == "RateLimited" or "429" in reason


_HANDLERS: dict[type, _Handler] = {
    r.JobQueued: _queued,
    r.JobStarted: _started,
    r.JobSucceeded: _succeeded,
    r.JobFailed: _failed,
    r.JobRetryScheduled: _retry_scheduled,
    r.JobDeadLettered: _dead_lettered,
    r.JobCancelRequested: _cancel_requested,
    r.JobCancelled: _cancelled,
    r.JobLeaseExpired: _lease_expired,
    r.JobRejected: _rejected,
}
