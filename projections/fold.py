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
from brigade.status import ErrorClass, Status
from processors.lifecycle import Job, apply, apply_owned
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
    def status(self) -> Status:
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
    new = track(tracked, event)
    before = tracked if tracked is not None else Tracked(job=new.job, last_event="")
    return new, _MEASURES.get(type(event), _attempt_only)(before, event)


def track(tracked: Tracked | None, event: r.LifecycleEvent, *, owned: bool = False) -> Tracked:
    """``advance`` without the measures: the state alone (replay needs nothing more).

    ``owned``: the job's state is the caller's private working copy, updated in place
    (``processors.lifecycle.apply_owned``); only for a fold that hands its states out
    when it is done, as replay does.

    Raises:
        Skip: the event is a duplicate (its sequence is not past the job's).
        processors.lifecycle.IllegalTransition: the state machine refuses the event.
    """
    if tracked is not None and event.envelope.sequence <= tracked.job.sequence:
        raise Skip()
    job = (apply_owned if owned else apply)(tracked.job if tracked is not None else None, event)
    if tracked is None:
        return Tracked(job, type(event).__name__)
    return Tracked(job, type(event).__name__, *_times(tracked, event))


def _times(tracked: Tracked, event: r.LifecycleEvent) -> tuple[datetime | None, datetime | None,
                                                                datetime | None, str]:
    """(queued_at, started_at, finished_at, error_class) after ``event``.

    Positional and branchy on purpose: this runs once per replayed event, and a per-type
    dict of changes plus ``dataclasses.replace`` cost several times more.
    """
    at = event.envelope.occurred_at
    kind = type(event)
    queued, started, finished, error = tracked.queued_at, tracked.started_at, tracked.finished_at, \
        tracked.error_class
    if kind is r.JobQueued:
        queued, started = at, None
    elif kind is r.JobStarted:
        started = at
    elif kind in _RESTARTS:
        started = None
    elif kind is r.JobSucceeded:
        finished, error = at, ""
    elif isinstance(event, r.JobFailed):
        error = event.error_class
        finished = at if event.terminal else finished
    elif kind in _FINISHES:
        finished = at
    return queued, started, finished, error


_RESTARTS = frozenset({r.JobRetryScheduled, r.JobLeaseExpired})  # the attempt's clock stops
_FINISHES = frozenset({r.JobDeadLettered, r.JobCancelled})


def fold_events(events: Iterable[r.LifecycleEvent]) -> Tracked | None:
    """Fold a job's events from nothing, skipping duplicates; None for no events."""
    tracked: Tracked | None = None
    for event in events:
        try:
            tracked = track(tracked, event, owned=True)  # this loop's own until returned
        except Skip:
            continue
    return tracked


def _ms(later: datetime, earlier: datetime | None) -> float | None:
    if earlier is None:
        return None
    return (later - earlier).total_seconds() * 1000.0


# Each measure function sees the job's state *before* the event.
_Measure = Callable[[Tracked, Any], Measures]


def _attempt_only(tracked: Tracked, event: Any) -> Measures:
    return Measures(attempt=int(getattr(event, "attempt", 0) or 0))


def _queued(tracked: Tracked, event: r.JobQueued) -> Measures:
    return Measures(attempt=event.attempt, reason=event.reason, model=event.model)


def _started(tracked: Tracked, event: r.JobStarted) -> Measures:
    queue_ms = _ms(event.envelope.occurred_at, tracked.queued_at)
    return Measures(attempt=event.attempt, queue_ms=queue_ms, model=event.model)


def _succeeded(tracked: Tracked, event: r.JobSucceeded) -> Measures:
    at = event.envelope.occurred_at
    return Measures(
        attempt=event.attempt,
        terminal=True,
        model=event.model,
        latency_ms=event.latency_ms,
        batch_size=event.batch_size,
        processing_ms=_ms(at, tracked.started_at),
        total_ms=_ms(at, tracked.created_at),
    )


def _failed(tracked: Tracked, event: r.JobFailed) -> Measures:
    at = event.envelope.occurred_at
    return Measures(
        attempt=event.attempt,
        reason=event.reason,
        error_class=event.error_class,
        terminal=event.terminal,
        rate_limited=is_rate_limited(event.error_class, event.reason),
        processing_ms=_ms(at, tracked.started_at),
        total_ms=_ms(at, tracked.created_at) if event.terminal else None,
    )


def _retry_scheduled(tracked: Tracked, event: r.JobRetryScheduled) -> Measures:
    # A 429 is counted once: on the failure when the processor reported one, else here.
    counted = tracked.last_event == "JobFailed" and is_rate_limited(
        tracked.error_class, tracked.job.last_error or ""
    )
    limited = not counted and (event.retry_after_ms is not None or is_rate_limited("", event.reason))
    return Measures(
        attempt=event.attempt, reason=event.reason, delay_ms=float(event.delay_ms), rate_limited=limited
    )


def _dead_lettered(tracked: Tracked, event: r.JobDeadLettered) -> Measures:
    total_ms = _ms(event.envelope.occurred_at, tracked.created_at)
    return Measures(attempt=event.attempts, reason=event.reason, terminal=True, total_ms=total_ms)


def _cancel_requested(tracked: Tracked, event: r.JobCancelRequested) -> Measures:
    return Measures(reason=event.reason or "")


def _cancelled(tracked: Tracked, event: r.JobCancelled) -> Measures:
    total_ms = _ms(event.envelope.occurred_at, tracked.created_at)
    return Measures(reason=event.reason or "", terminal=True, total_ms=total_ms)


def _lease_expired(tracked: Tracked, event: r.JobLeaseExpired) -> Measures:
    return Measures(attempt=event.attempt, reason="lease expired")


def _rejected(tracked: Tracked, event: r.JobRejected) -> Measures:
    return Measures(reason=event.reason)


def is_rate_limited(error_class: str, reason: str) -> bool:
    """Whether a failure was the model service answering 429 (the one place that decides).

    The class is the event's ``error_class`` where it has one, else the processor's reason
    (``"rate_limited: ..."``); "429" in the reason covers events written before the class.
    """
    limited = ErrorClass.RATE_LIMITED
    return error_class == limited or ErrorClass.of_reason(reason) is limited or "429" in reason


_MEASURES: dict[type, _Measure] = {
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
