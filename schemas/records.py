"""Typed Python counterparts of the Avro records in ``schemas/avro``.

Field names are the snake_case of the Avro camelCase names; ``tests/schemas`` checks every
class against the newest version of its schema so the two cannot drift. Records are
frozen: an event, once written, never changes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, TypeGuard

Priority = Literal["interactive", "batch"]
OutcomeKind = Literal["started", "succeeded", "failed", "skipped", "callback"]

_FROZEN = {"frozen": True, "slots": True, "kw_only": True}


@dataclass(**_FROZEN)
class Envelope:
    """What every lifecycle event carries."""

    event_id: str
    job_id: str
    tenant_id: str
    occurred_at: datetime
    sequence: int
    traceparent: str | None = None


@dataclass(**_FROZEN)
class JobSpec:
    """The immutable part of a job: what the client asked for."""

    job_id: str
    tenant_id: str
    payload_sha256: str
    created_at: datetime
    idempotency_key: str | None = None
    model_hint: str | None = None
    input: str | None = None
    payload_ref: str | None = None
    payload_size: int = 0
    priority: Priority = "batch"
    batchable: bool = True
    long_context: bool = False
    max_attempts: int = 3
    deadline: datetime | None = None
    callback_url: str | None = None
    metadata: dict[str, str] = field(default_factory=dict)


# ---- commands -------------------------------------------------------------------------


@dataclass(**_FROZEN)
class SubmitJob:
    """Command: run this job."""

    command_id: str
    spec: JobSpec
    traceparent: str | None = None


@dataclass(**_FROZEN)
class CancelJob:
    """Command: cancel this job."""

    command_id: str
    job_id: str
    tenant_id: str
    requested_at: datetime
    reason: str | None = None
    traceparent: str | None = None


# ---- lifecycle events -----------------------------------------------------------------


@dataclass(**_FROZEN)
class JobSubmitted:
    """A job was accepted into the log."""

    envelope: Envelope
    spec: JobSpec


@dataclass(**_FROZEN)
class JobQueued:
    """A job was routed and dispatched to a work topic."""

    envelope: Envelope
    pool: str
    lane: str
    model: str
    attempt: int
    reason: str = "submitted"


@dataclass(**_FROZEN)
class JobStarted:
    """A worker began an attempt."""

    envelope: Envelope
    attempt: int
    worker: str
    lease_deadline: datetime
    batch_id: str
    model: str = ""


@dataclass(**_FROZEN)
class JobRetryScheduled:
    """A failed attempt will be retried after a delay."""

    envelope: Envelope
    attempt: int
    delay_ms: int
    reason: str
    due_at: datetime
    tier: str
    retry_after_ms: int | None = None


@dataclass(**_FROZEN)
class JobSucceeded:
    """An attempt produced a result."""

    envelope: Envelope
    attempt: int
    model: str
    latency_ms: float
    result_ref: str | None = None
    result_inline: str | None = None
    result_size: int = 0
    result_sha256: str = ""
    batch_size: int = 1
    queue_ms: float = 0.0


@dataclass(**_FROZEN)
class JobFailed:
    """An attempt failed; terminal when the job will not be tried again."""

    envelope: Envelope
    attempt: int
    reason: str
    error_class: str
    terminal: bool


@dataclass(**_FROZEN)
class JobDeadLettered:
    """A job exhausted its attempts; its last input went to the dead-letter topic."""

    envelope: Envelope
    attempts: int
    reason: str
    errors: list[str] = field(default_factory=list)


@dataclass(**_FROZEN)
class JobCancelRequested:
    """A client asked to cancel a running job."""

    envelope: Envelope
    reason: str | None = None


@dataclass(**_FROZEN)
class JobCancelled:
    """A job was cancelled and will not run (again)."""

    envelope: Envelope
    reason: str | None = None


@dataclass(**_FROZEN)
class JobLeaseExpired:
    """A running attempt outlived its lease and was taken back."""

    envelope: Envelope
    attempt: int
    worker: str
    lease_deadline: datetime


@dataclass(**_FROZEN)
class JobRejected:
    """A command was refused without changing the job (conflict, invalid)."""

    envelope: Envelope
    reason: str
    detail: str = ""


@dataclass(**_FROZEN)
class JobCallbackAttempted:
    """One delivery attempt of a job's callback."""

    envelope: Envelope
    callback_attempt: int
    url: str
    ok: bool
    status_code: int | None = None
    error: str | None = None


@dataclass(**_FROZEN)
class _CircuitEvent:
    event_id: str
    occurred_at: datetime
    pool: str
    model: str
    worker: str = ""
    reason: str = ""
    failures: int = 0


@dataclass(**_FROZEN)
class CircuitOpened(_CircuitEvent):
    """A model's breaker opened: calls stop until the reset timeout."""


@dataclass(**_FROZEN)
class CircuitHalfOpened(_CircuitEvent):
    """A model's breaker lets one probe through."""


@dataclass(**_FROZEN)
class CircuitClosed(_CircuitEvent):
    """A model's breaker closed again after a successful probe."""


# ---- work, outcomes, timers, dead letters ---------------------------------------------


@dataclass(**_FROZEN)
class WorkItem:
    """One attempt of a job, dispatched to a pool's lane."""

    spec: JobSpec
    attempt: int
    pool: str
    lane: str
    model: str
    dispatched_at: datetime
    lease_ms: int
    traceparent: str | None = None


@dataclass(**_FROZEN)
class WorkOutcome:
    """What a worker reports about an attempt. Workers report; the processor decides."""

    outcome_id: str
    job_id: str
    tenant_id: str
    attempt: int
    kind: OutcomeKind
    occurred_at: datetime
    worker: str
    batch_id: str = ""
    model: str = ""
    lease_ms: int = 0
    result_ref: str | None = None
    result_inline: str | None = None
    result_size: int = 0
    result_sha256: str = ""
    latency_ms: float = 0.0
    batch_size: int = 0
    error_class: str | None = None
    error: str | None = None
    retry_after_ms: int | None = None
    callback_attempt: int = 0
    callback_url: str | None = None
    callback_status: int | None = None
    callback_ok: bool = False
    # On a final outcome of an attempt whose start no `started` outcome reported (the call
    # ended within the pool's announce window): when the model call began (docs/workers.md).
    started_at: datetime | None = None


@dataclass(**_FROZEN)
class RetryTimer:
    """Held by a delay tier until due, then handed back to the job processor."""

    job_id: str
    tenant_id: str
    attempt: int
    due_at: datetime
    tier: str


@dataclass(**_FROZEN)
class DeadLetter:
    """A message Brigade could not process, kept intact with the reason."""

    source_topic: str
    partition: int
    offset: int
    raw: bytes
    reason: str
    occurred_at: datetime
    key: bytes | None = None
    job_id: str | None = None
    attempts: int = 0
    errors: list[str] = field(default_factory=list)


LifecycleEvent = (
    JobSubmitted
    | JobQueued
    | JobStarted
    | JobRetryScheduled
    | JobSucceeded
    | JobFailed
    | JobDeadLettered
    | JobCancelRequested
    | JobCancelled
    | JobLeaseExpired
    | JobRejected
    | JobCallbackAttempted
)
CircuitEvent = CircuitOpened | CircuitHalfOpened | CircuitClosed
Command = SubmitJob | CancelJob
Record = LifecycleEvent | CircuitEvent | Command | WorkItem | WorkOutcome | RetryTimer | DeadLetter
LIFECYCLE_TYPES: tuple[type, ...] = (
    JobSubmitted, JobQueued, JobStarted, JobRetryScheduled, JobSucceeded, JobFailed, JobDeadLettered,
    JobCancelRequested, JobCancelled, JobLeaseExpired, JobRejected, JobCallbackAttempted,
)


def is_lifecycle(record: object) -> TypeGuard[LifecycleEvent]:
    """Whether ``record`` is a job's lifecycle event (the records with an envelope)."""
    return isinstance(record, LIFECYCLE_TYPES)

RECORD_TYPES: dict[str, type] = {
    "brigade.events.JobSubmitted": JobSubmitted,
    "brigade.events.JobQueued": JobQueued,
    "brigade.events.JobStarted": JobStarted,
    "brigade.events.JobRetryScheduled": JobRetryScheduled,
    "brigade.events.JobSucceeded": JobSucceeded,
    "brigade.events.JobFailed": JobFailed,
    "brigade.events.JobDeadLettered": JobDeadLettered,
    "brigade.events.JobCancelRequested": JobCancelRequested,
    "brigade.events.JobCancelled": JobCancelled,
    "brigade.events.JobLeaseExpired": JobLeaseExpired,
    "brigade.events.JobRejected": JobRejected,
    "brigade.events.JobCallbackAttempted": JobCallbackAttempted,
    "brigade.events.CircuitOpened": CircuitOpened,
    "brigade.events.CircuitHalfOpened": CircuitHalfOpened,
    "brigade.events.CircuitClosed": CircuitClosed,
    "brigade.commands.SubmitJob": SubmitJob,
    "brigade.commands.CancelJob": CancelJob,
    "brigade.work.WorkItem": WorkItem,
    "brigade.work.WorkOutcome": WorkOutcome,
    "brigade.work.RetryTimer": RetryTimer,
    "brigade.dlq.DeadLetter": DeadLetter,
}
"""Avro full name → Python class. Every schema file in ``schemas/avro`` has an entry."""

NESTED_TYPES: dict[str, type] = {
    "brigade.events.Envelope": Envelope,
    "brigade.jobs.JobSpec": JobSpec,
}
