"""``decide(state, input) -> Decision``: which lifecycle events an input causes. Pure.

Inputs are what the job processor consumes: ``SubmitJob`` and ``CancelJob`` commands,
``WorkOutcome`` reports from workers, and ``RetryTimer`` messages, which are either a due
retry handed back by a delay tier or a check (``tier="check"``) raised by the processor's
own lease/deadline timer. Every emitted event is applied on the way, so an illegal
transition never leaves this module; event ids are deterministic, so deciding the same
input twice from the same state yields the same events.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from brigade.ids import event_id
from brigade.settings import RetrySettings, Settings, tier_name
from brigade.status import ErrorClass
from processors.lifecycle import IllegalTransition, Job, apply
from processors.retry import plan_retry
from processors.routing import NoRoute, Route, Router
from schemas.records import (
    CancelJob,
    Envelope,
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
    LifecycleEvent,
    RetryTimer,
    SubmitJob,
    WorkOutcome,
)

Input = SubmitJob | CancelJob | WorkOutcome | RetryTimer
CHECK_TIER = "check"  # RetryTimer.tier of a lease/deadline check raised by the processor
NOT_DUE_TOLERANCE = timedelta(milliseconds=20)


@dataclass(frozen=True, kw_only=True)
class Policy:
    """Everything ``decide`` needs besides state and input: routing, retries, leases."""

    router: Router
    retry: RetrySettings
    lease_s: float

    @classmethod
    def from_settings(cls, settings: Settings) -> Policy:
        """The policy configured by ``settings``."""
        return cls(router=Router(settings), retry=settings.retry, lease_s=settings.retry.lease_s)


@dataclass(frozen=True, slots=True)
class Decision:
    """The events an input causes, the state after them, and a note for metrics.

    ``note`` is one of: applied, duplicate, conflict, rejected, stale, finished,
    unknown_job, not_due, noop, illegal.
    """

    state: Job | None
    events: tuple[LifecycleEvent, ...]
    note: str


class _Emitter:
    """Builds events with consecutive sequences and applies each as it goes."""

    def __init__(self, state: Job | None, job_id: str, tenant_id: str, now: datetime,
                 traceparent: str | None) -> None:
        self.state = state
        self.job_id, self.tenant_id, self.now, self.traceparent = job_id, tenant_id, now, traceparent
        self.events: list[LifecycleEvent] = []

    def emit(self, cls: type, transition: str, id_attempt: int = 0, id_detail: str = "", /,
             *, at: datetime | None = None, **fields: Any) -> Job:
        envelope = Envelope(
            event_id=event_id(self.job_id, transition, id_attempt, id_detail),
            job_id=self.job_id,
            tenant_id=self.tenant_id,
            occurred_at=self.now if at is None else at,
            sequence=(self.state.sequence if self.state is not None else 0) + 1,
            traceparent=self.traceparent,
        )
        event: LifecycleEvent = cls(envelope=envelope, **fields)
        self.state = apply(self.state, event)
        self.events.append(event)
        return self.state

    def decision(self, note: str = "applied") -> Decision:
        return Decision(self.state, tuple(self.events), note)


def decide(state: Job | None, command: Input, *, policy: Policy, now: datetime) -> Decision:
    """Decide the lifecycle events that ``command`` causes for a job in ``state``.

    Never raises for a legal-but-useless input (a duplicate, a late outcome): the
    decision carries no events and a ``note`` saying why.
    """
    try:
        if isinstance(command, SubmitJob):
            return _submit(state, command, policy, now)
        if isinstance(command, CancelJob):
            return _cancel(state, command, now)
        if isinstance(command, WorkOutcome):
            return _outcome(state, command, policy, now)
        return _timer(state, command, policy, now)
    except IllegalTransition:
        return Decision(state, (), "illegal")


def _emitter(state: Job, now: datetime, traceparent: str | None = None) -> _Emitter:
    return _Emitter(state, state.job_id, state.tenant_id, now, traceparent)


def _deadline_passed(job: Job, now: datetime) -> bool:
    return job.spec is not None and job.spec.deadline is not None and job.spec.deadline <= now


def _max_attempts(job: Job, policy: Policy) -> int:
    return min(job.max_attempts, policy.retry.max_attempts_limit)


# ---- commands -------------------------------------------------------------------------


def _submit(state: Job | None, cmd: SubmitJob, policy: Policy, now: datetime) -> Decision:
    spec = cmd.spec
    if state is not None:
        if state.spec is not None and state.spec.payload_sha256 == spec.payload_sha256:
            return Decision(state, (), "duplicate")
        if spec.payload_sha256 in state.conflicts:
            return Decision(state, (), "conflict")
        em = _emitter(state, now, cmd.traceparent)
        em.emit(JobRejected, "rejected", 0, f"conflict:{spec.payload_sha256}", reason="conflict",
                detail=spec.payload_sha256)
        return em.decision("conflict")
    em = _Emitter(None, spec.job_id, spec.tenant_id, now, cmd.traceparent)
    job = em.emit(JobSubmitted, "submitted", spec=spec)
    if _deadline_passed(job, now):
        _fail(em, job, "deadline_exceeded", ErrorClass.DEADLINE)
        return em.decision()
    try:
        target = policy.router.route(spec)
    except NoRoute as exc:
        em.emit(JobRejected, "rejected", 0, "no_route", reason="no_route", detail=str(exc))
        _fail(em, em.state or job, f"no_route: {exc}", "rejected")
        return em.decision("rejected")
    _queue(em, target, 1, "submitted")
    return em.decision()


def _cancel(state: Job | None, cmd: CancelJob, now: datetime) -> Decision:
    if state is None:
        return Decision(None, (), "unknown_job")
    if state.terminal:
        return Decision(state, (), "finished")
    em = _emitter(state, now, cmd.traceparent)
    if state.status == "queued":
        em.emit(JobCancelled, "cancelled", reason=cmd.reason or "cancelled by client")
        return em.decision()
    if state.cancel_requested:
        return Decision(state, (), "duplicate")
    em.emit(JobCancelRequested, "cancel_requested", reason=cmd.reason or "cancelled by client")
    return em.decision()


# ---- outcomes -------------------------------------------------------------------------


def _outcome(state: Job | None, o: WorkOutcome, policy: Policy, now: datetime) -> Decision:
    if state is None:
        return Decision(None, (), "unknown_job")
    if o.kind == "callback":
        return _callback(state, o, now)
    if state.terminal:
        return Decision(state, (), "finished")
    if o.attempt != state.attempt or state.phase not in ("dispatched", "running"):
        return Decision(state, (), "stale")
    if o.kind == "started":
        return _started(state, o, policy, now)
    return _final(state, o, policy, now)


def _started(state: Job, o: WorkOutcome, policy: Policy, now: datetime) -> Decision:
    if state.phase == "running":
        return Decision(state, (), "duplicate")
    em = _emitter(state, now)
    _start(em, state, o, policy, now)
    return em.decision()


def _final(state: Job, o: WorkOutcome, policy: Policy, now: datetime) -> Decision:
    em = _emitter(state, now)
    job = state
    if o.started_at is not None and state.phase == "dispatched":
        # A call shorter than the worker's announce window: its start comes with the result.
        job = _start(em, state, o, policy, _between(state.updated_at, o.started_at, now))
    if job.cancel_requested:
        em.emit(JobCancelled, "cancelled", reason="cancelled while running; outcome discarded")
    elif o.kind == "succeeded":
        em.emit(JobSucceeded, "succeeded", job.attempt, attempt=job.attempt,
                model=o.model or job.model or "", latency_ms=o.latency_ms,
                result_ref=o.result_ref, result_inline=o.result_inline, result_size=o.result_size,
                result_sha256=o.result_sha256, batch_size=max(o.batch_size, 1))
    elif o.kind == "skipped" and _deadline_passed(job, now):
        _fail(em, job, "deadline_exceeded", "deadline")
    else:
        _failure(em, job, o, policy, now)
    return em.decision()


def _between(earliest: datetime | None, at: datetime, latest: datetime) -> datetime:
    """``at`` (a worker's clock) kept within the job's last event and now (the processor's)."""
    if earliest is not None and at < earliest:
        return earliest
    return min(at, latest)


def _start(em: _Emitter, state: Job, o: WorkOutcome, policy: Policy, at: datetime) -> Job:
    """Emit JobStarted for the attempt ``o`` reports, as of ``at``; the state after it."""
    lease_s = o.lease_ms / 1000.0 if o.lease_ms > 0 else policy.lease_s
    return em.emit(JobStarted, "started", state.attempt, at=at, attempt=state.attempt,
                   worker=o.worker, lease_deadline=at + timedelta(seconds=lease_s),
                   batch_id=o.batch_id, model=o.model or state.model or "")


def _callback(state: Job, o: WorkOutcome, now: datetime) -> Decision:
    if o.callback_attempt <= state.callback_attempts:
        return Decision(state, (), "duplicate")
    em = _emitter(state, now)
    em.emit(JobCallbackAttempted, "callback", o.callback_attempt,
            callback_attempt=o.callback_attempt, url=o.callback_url or "", ok=o.callback_ok,
            status_code=o.callback_status, error=o.error)
    return em.decision()


def _failure(em: _Emitter, job: Job, o: WorkOutcome, policy: Policy, now: datetime) -> None:
    error_class = o.error_class or (ErrorClass.SKIPPED if o.kind == "skipped" else ErrorClass.TRANSIENT)
    error = f"{error_class}: {o.error or o.kind}"
    if error_class == ErrorClass.CANCELLED:
        em.emit(JobCancelled, "cancelled", reason=f"worker cancelled the attempt: {o.error or ''}")
        return
    if error_class == ErrorClass.PERMANENT:
        _fail(em, job, error, error_class)
        return
    if error_class == ErrorClass.CIRCUIT_OPEN and job.lane == "interactive" and job.pool is not None:
        fallback = policy.router.fallback(job.pool, job.lane)
        if fallback is not None:
            _queue(em, fallback, job.attempt + 1, "fallback")
            return
    _retry_or_exhaust(em, job, error, error_class, o.retry_after_ms, policy, now)


def _retry_or_exhaust(em: _Emitter, job: Job, error: str, error_class: str,
                      retry_after_ms: int | None, policy: Policy, now: datetime) -> None:
    if job.counted_attempts >= _max_attempts(job, policy):
        _exhaust(em, job, error, error_class)
        return
    plan = plan_retry(job_id=job.job_id, failed_attempt=job.attempt, now=now,
                      retry_after_ms=retry_after_ms, policy=policy.retry)
    deadline = job.spec.deadline if job.spec is not None else None
    if deadline is not None and plan.due_at >= deadline:
        _fail(em, job, "deadline_exceeded", ErrorClass.DEADLINE)
        return
    em.emit(JobRetryScheduled, "retry_scheduled", job.attempt, attempt=job.attempt + 1,
            delay_ms=round(plan.delay_s * 1000), reason=error, due_at=plan.due_at,
            tier=tier_name(plan.tier_s), retry_after_ms=retry_after_ms)


def _exhaust(em: _Emitter, job: Job, error: str, error_class: str) -> None:
    reason = f"max_attempts_exhausted: {error}"
    em.emit(JobFailed, "failed", job.attempt, "exhausted", attempt=job.attempt,
            reason=reason, error_class=error_class, terminal=True)
    em.emit(JobDeadLettered, "dead_lettered", job.attempt, attempts=job.counted_attempts,
            reason="max_attempts_exhausted", errors=[*job.errors, error])


def _fail(em: _Emitter, job: Job, reason: str, error_class: str) -> None:
    em.emit(JobFailed, "failed", job.attempt, error_class, attempt=job.attempt, reason=reason,
            error_class=error_class, terminal=True)


def _queue(em: _Emitter, target: Route, attempt: int, reason: str) -> None:
    em.emit(JobQueued, "queued", attempt, pool=target.pool, lane=target.lane, model=target.model,
            attempt=attempt, reason=reason)


def _same_route(job: Job) -> Route:
    return Route(pool=job.pool or "", lane="interactive" if job.lane == "interactive" else "batch",
                 model=job.model or "")


# ---- timers ---------------------------------------------------------------------------


def _timer(state: Job | None, t: RetryTimer, policy: Policy, now: datetime) -> Decision:
    if state is None:
        return Decision(None, (), "unknown_job")
    if state.terminal:
        return Decision(state, (), "finished")
    if t.tier == CHECK_TIER:
        return _check(state, policy, now)
    if state.phase != "retry_wait" or t.attempt != state.attempt + 1:
        return Decision(state, (), "stale")
    em = _emitter(state, now)
    if _deadline_passed(state, now):
        _fail(em, state, "deadline_exceeded", "deadline")
        return em.decision()
    if state.next_retry_at is not None and now + NOT_DUE_TOLERANCE < state.next_retry_at:
        return Decision(state, (), "not_due")
    _queue(em, _same_route(state), t.attempt, "retry")
    return em.decision()


def dispatch_due(job: Job, timeout_s: float) -> datetime | None:
    """When a dispatched job that has not started is re-dispatched (``None``: not dispatched)."""
    if job.phase != "dispatched" or job.dispatched_at is None:
        return None
    return job.dispatched_at + timedelta(seconds=timeout_s)


def retry_overdue(job: Job, grace_s: float) -> datetime | None:
    """When a job waiting for its retry timer is dispatched without it (``None``: not waiting).

    The timer lives on a delay topic; a timer lost there (a delay process killed around a
    broker restart) would leave the job in ``retry_wait`` for ever, so the job's own
    processor holds a deadline of the retry's due time plus ``grace_s``.
    """
    if job.phase != "retry_wait" or job.next_retry_at is None:
        return None
    return job.next_retry_at + timedelta(seconds=grace_s)


def _check(state: Job, policy: Policy, now: datetime) -> Decision:
    """A lease/deadline check: re-queue an expired lease, fail a queued job past deadline,
    re-dispatch a job whose work item did not start within ``retry.dispatch_timeout_s``, or
    whose retry timer is overdue by ``retry.retry_timer_grace_s``."""
    em = _emitter(state, now)
    if state.status == "queued" and _deadline_passed(state, now):
        _fail(em, state, "deadline_exceeded", "deadline")
        return em.decision()
    due = dispatch_due(state, policy.retry.dispatch_timeout_s)
    if due is not None and due <= now:
        _queue(em, _same_route(state), state.attempt + 1, "dispatch_timeout")
        return em.decision()
    overdue = retry_overdue(state, policy.retry.retry_timer_grace_s)
    if overdue is not None and overdue <= now:
        # The attempt the lost timer would have started: it counts like any retry, and the
        # timer, should it still arrive, is stale by then.
        _queue(em, _same_route(state), state.attempt + 1, "retry_timer_overdue")
        return em.decision()
    lease = state.lease_deadline
    if state.status != "running" or lease is None or lease > now:
        return Decision(state, (), "noop")
    job = em.emit(JobLeaseExpired, "lease_expired", state.attempt, attempt=state.attempt,
                  worker=state.worker or "", lease_deadline=lease)
    if job.cancel_requested:
        em.emit(JobCancelled, "cancelled", reason="cancelled; the running attempt's lease expired")
    elif job.counted_attempts >= _max_attempts(job, policy):
        _exhaust(em, job, f"lease_expired: worker {state.worker}", "lease_expired")
    elif _deadline_passed(job, now):
        _fail(em, job, "deadline_exceeded", ErrorClass.DEADLINE)
    else:
        _queue(em, _same_route(job), job.attempt + 1, "lease_expired")
    return em.decision()
