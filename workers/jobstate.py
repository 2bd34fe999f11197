"""What a worker knows about a job, folded from ``brigade.job-events``: pure functions.

The worker app follows the event log into a Faust table keyed by job id (``JobView`` as a
JSON dict). Two decisions read it: whether a work item should be skipped (the job is
finished, cancelled, or the item is a stale attempt), and whether this worker must send
the job's callback. Both are pure functions of the view, tested without Kafka.

The view keeps only what those two decisions read, so that most events change nothing and
cost no table write (each write is a changelog record a restarted worker reads back before
it works): a job without a callback has no row until it is cancelled, queued for a second
attempt or finished; ``running`` is not tracked (no decision tells it from ``queued``), and
``JobStarted`` records are not even decoded (``IGNORED_TYPES``).
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import asdict, dataclass, replace
from typing import Any

from brigade.status import TERMINAL
from schemas.records import (
    CircuitClosed,
    CircuitHalfOpened,
    CircuitOpened,
    JobCallbackAttempted,
    JobCancelled,
    JobCancelRequested,
    JobDeadLettered,
    JobFailed,
    JobLeaseExpired,
    JobQueued,
    JobRejected,
    JobRetryScheduled,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    WorkItem,
)

# Records of brigade.job-events no decision of a worker reads, skipped before decoding.
# JobStarted never raises the attempt: it repeats the attempt of the JobQueued before it.
IGNORED_TYPES: frozenset[type] = frozenset(
    {JobStarted, JobRejected, CircuitOpened, CircuitHalfOpened, CircuitClosed}
)


@dataclass(frozen=True, kw_only=True)
class JobView:
    """The latest state of one job, as far as workers care."""

    job_id: str
    tenant_id: str = ""
    status: str = "queued"
    attempt: int = 0
    pool: str | None = None
    callback_url: str | None = None
    cancel_requested: bool = False
    # Event id of the event that made the job terminal: the one whose delivery sends the
    # callback. Its redelivery (after a crash) sends again; any later terminal-looking
    # event (JobDeadLettered after JobFailed) does not.
    terminal_event: str = ""
    callback_done: bool = False

    @property
    def terminal(self) -> bool:
        """Whether the job will not run again."""
        return self.status in TERMINAL

    @property
    def decides_anything(self) -> bool:
        """Whether a decision reads differently than for a job never heard of.

        An unknown job runs (any attempt below 2 is current) and sends no callback.
        """
        return (self.terminal or self.cancel_requested or self.callback_url is not None
                or self.attempt > 1 or self.callback_done)

    def to_json(self) -> dict[str, Any]:
        """The table value."""
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> JobView:
        """Read a table value back (unknown keys from newer workers are ignored)."""
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        return cls(**known)


def fold(view: JobView | None, event: object) -> JobView | None:
    """Apply one job-events record; ``None`` while nothing known about the job decides anything."""
    job_id = _job_id(event)
    if job_id is None:
        return view
    base = view or JobView(job_id=job_id)
    if view is not None and view.terminal and not isinstance(event, JobCallbackAttempted):
        # A finished job stays finished: later records (a late JobFailed after a dead letter,
        # a replayed start) must not resurrect it.
        return view
    after = _apply(base, event)
    if after.terminal and not base.terminal:
        after = replace(after, terminal_event=str(event.envelope.event_id))  # type: ignore[attr-defined]
    if view is None and not after.decides_anything:
        return None
    return after


def _job_id(event: object) -> str | None:
    envelope = getattr(event, "envelope", None)
    return None if envelope is None else str(envelope.job_id)


def _apply(view: JobView, event: object) -> JobView:
    match event:
        case JobSubmitted(spec=spec):
            return replace(view, tenant_id=spec.tenant_id, callback_url=spec.callback_url)
        case JobQueued(pool=pool, attempt=attempt):
            return replace(view, status="queued", pool=pool, attempt=max(view.attempt, attempt))
        case JobRetryScheduled(attempt=attempt) | JobLeaseExpired(attempt=attempt):
            return replace(view, status="queued", attempt=max(view.attempt, attempt))
        case JobSucceeded(attempt=attempt):
            return replace(view, status="succeeded", attempt=max(view.attempt, attempt))
        case JobFailed(terminal=True):
            return replace(view, status="failed")
        case JobDeadLettered():
            return replace(view, status="failed")
        case JobCancelRequested():
            return replace(view, cancel_requested=True)
        case JobCancelled():
            return replace(view, status="cancelled")
        case JobCallbackAttempted(ok=True):
            return replace(view, callback_done=True)
    return view


def skip_reason(view: JobView | None, item: WorkItem) -> str | None:
    """Why ``item`` must not reach the model, or ``None`` when it should run.

    An unknown job runs: the table may lag the work topic, and the processor drops an
    outcome it does not expect, so running is the safe default.
    """
    if view is None:
        return None
    if view.terminal:
        return f"job already {view.status}"
    if view.cancel_requested:
        return "cancel requested"
    if item.attempt < view.attempt:
        return f"stale attempt {item.attempt} (job is on attempt {view.attempt})"
    return None


def should_send_callback(view: JobView, event_id: str, *, my_pools: Collection[str],
                         default_pool: str | None) -> bool:
    """Whether the event ``event_id`` (just folded into ``view``) sends the job's callback here.

    Only the event that made the job terminal sends it, every time it is read until the
    log says a delivery succeeded (at-least-once: a worker killed mid-delivery leaves the
    event unacked, and whoever reads it next sends again). Within a group, only the process
    owning the job's job-events partition sees the event; across groups (one per pool
    set), the group serving the job's last pool sends it.
    """
    if not view.terminal or view.callback_url is None or view.callback_done:
        return False
    if not event_id or event_id != view.terminal_event:
        return False
    pool = view.pool if view.pool is not None else default_pool
    return pool is not None and pool in my_pools
