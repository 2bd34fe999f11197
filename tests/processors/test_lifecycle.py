"""The pure state machine: scenarios, then properties over arbitrary input sequences."""

from __future__ import annotations

import dataclasses
import time

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from processors.decisions import Decision, Input, decide
from processors.lifecycle import IllegalTransition, Job, apply, apply_owned, fold
from schemas.records import (
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
)
from testkit.jobs import (
    T0,
    cancel,
    later,
    outcome,
    policy,
    spec,
    submit,
    timer,
)

POLICY = policy()


def run(inputs: list[tuple[Input, float]]) -> tuple[Job | None, list[LifecycleEvent], list[Decision]]:
    """Decide each input at its time; return the final state, all events and decisions."""
    state: Job | None = None
    events: list[LifecycleEvent] = []
    decisions: list[Decision] = []
    for command, at in inputs:
        decision = decide(state, command, policy=POLICY, now=later(at))
        decisions.append(decision)
        events.extend(decision.events)
        state = decision.state
    return state, events, decisions


def kinds(events: list[LifecycleEvent]) -> list[str]:
    return [type(e).__name__ for e in events]


# ---- scenarios ------------------------------------------------------------------------


def test_happy_path_submit_queue_start_succeed() -> None:
    s = spec()
    state, events, _ = run([
        (submit(s), 0),
        (outcome(s, "started", lease_ms=10_000), 1),
        (outcome(s, "succeeded", result_inline='{"embedding":[1]}', latency_ms=3.0), 2),
    ])
    assert kinds(events) == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]
    assert state is not None and state.status == "succeeded"
    assert state.result_inline == '{"embedding":[1]}'
    assert [e.envelope.sequence for e in events] == [1, 2, 3, 4]
    queued = events[1]
    assert isinstance(queued, JobQueued)
    assert (queued.pool, queued.lane, queued.attempt) == ("small", "batch", 1)
    assert fold(events) == state


def test_a_final_outcome_carrying_its_start_records_jobstarted_at_that_time() -> None:
    # Given a job whose call ended within the worker's announce window
    s = spec()
    done = outcome(s, "succeeded", started_at=later(1), batch_id="b1", lease_ms=10_000,
                   result_inline='{"embedding":[1]}', latency_ms=3.0)
    # When its only outcome arrives, once, then again (a redelivery)
    state, events, decisions = run([(submit(s), 0), (done, 2), (done, 3)])
    # Then the start is an event of its own, at the call's start, before the result
    assert kinds(events) == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]
    started, succeeded = events[2], events[3]
    assert isinstance(started, JobStarted)
    assert (started.envelope.occurred_at, started.batch_id, started.worker) == (later(1), "b1", "w1")
    assert started.lease_deadline == later(11)
    assert succeeded.envelope.occurred_at == later(2)
    assert [e.envelope.sequence for e in events] == [1, 2, 3, 4]
    assert decisions[2].note == "finished" and decisions[2].events == ()
    assert state is not None and state.status == "succeeded" and fold(events) == state


@pytest.mark.parametrize(("reported", "recorded"), [(-5.0, 0.0), (9.0, 2.0)])
def test_a_reported_start_stays_between_the_last_event_and_now(reported: float, recorded: float) -> None:
    # A worker's clock behind the processor's (start before JobQueued) or ahead (after now)
    s = spec()
    done = outcome(s, "succeeded", started_at=later(reported))
    _, events, _ = run([(submit(s), 0), (done, 2)])
    assert kinds(events)[2:] == ["JobStarted", "JobSucceeded"]
    assert events[2].envelope.occurred_at == later(recorded)


def test_a_failed_call_carrying_its_start_is_started_then_retried() -> None:
    s = spec(max_attempts=3)
    failed = outcome(s, "failed", started_at=later(1), error_class="transient", error="boom")
    state, events, _ = run([(submit(s), 0), (failed, 2)])
    assert kinds(events) == ["JobSubmitted", "JobQueued", "JobStarted", "JobRetryScheduled"]
    assert state is not None and state.phase == "retry_wait" and fold(events) == state


def test_a_start_already_recorded_is_not_recorded_again() -> None:
    # A `started` outcome came first (an announced call): the final one's start adds nothing
    s = spec()
    _, events, _ = run([
        (submit(s), 0),
        (outcome(s, "started", lease_ms=10_000), 1),
        (outcome(s, "succeeded", started_at=later(1)), 2),
    ])
    assert kinds(events) == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]


def test_a_skipped_outcome_never_starts_the_job() -> None:
    s = spec()
    _, events, _ = run([(submit(s), 0), (outcome(s, "skipped", error_class="skipped"), 1)])
    assert "JobStarted" not in kinds(events)


def test_routing_rule_and_model_hint_pick_the_pool() -> None:
    _, events, _ = run([(submit(spec(long_context=True, priority="interactive")), 0)])
    assert isinstance(events[1], JobQueued) and (events[1].pool, events[1].lane) == ("big", "interactive")
    _, events, _ = run([(submit(spec("x", model_hint="big-model")), 0)])
    assert isinstance(events[1], JobQueued) and events[1].pool == "big" and events[1].model == "big-model"


def test_unknown_model_hint_without_default_is_rejected_with_a_clear_event() -> None:
    no_default = policy(default_pool=None, routes=[])
    s = spec(model_hint="gpt-nonexistent")
    decision = decide(None, submit(s), policy=no_default, now=T0)
    assert kinds(list(decision.events)) == ["JobSubmitted", "JobRejected", "JobFailed"]
    rejected = decision.events[1]
    assert isinstance(rejected, JobRejected) and rejected.reason == "no_route"
    assert "gpt-nonexistent" in rejected.detail
    assert decision.state is not None and decision.state.status == "failed"
    assert decision.note == "rejected"


def test_resubmission_is_a_duplicate_and_a_different_payload_is_a_conflict() -> None:
    s = spec("a", key="k1")
    other = spec("b", key="k1")
    assert s.job_id == other.job_id
    state, events, decisions = run([(submit(s), 0), (submit(s), 1), (submit(other), 2), (submit(other), 3)])
    assert [d.note for d in decisions] == ["applied", "duplicate", "conflict", "conflict"]
    assert kinds(events) == ["JobSubmitted", "JobQueued", "JobRejected"]
    assert state is not None and state.status == "queued" and state.spec == s


def test_transient_failure_schedules_a_retry_in_the_smallest_fitting_tier() -> None:
    s = spec()
    state, events, _ = run([
        (submit(s), 0), (outcome(s, "started"), 1),
        (outcome(s, "failed", error_class="rate_limited", error="429", retry_after_ms=3000), 2),
    ])
    retry = events[-1]
    assert isinstance(retry, JobRetryScheduled)
    assert (retry.attempt, retry.delay_ms, retry.tier, retry.retry_after_ms) == (2, 3000, "5s", 3000)
    assert retry.due_at == later(5)
    assert state is not None and state.status == "queued" and state.phase == "retry_wait"
    # Early timer: not due. Due timer: re-queued as attempt 2 on the same route.
    assert decide(state, timer(s, 2, retry.due_at, "5s"), policy=POLICY, now=later(3)).note == "not_due"
    due = decide(state, timer(s, 2, retry.due_at, "5s"), policy=POLICY, now=later(5))
    assert isinstance(due.events[0], JobQueued) and due.events[0].attempt == 2
    assert due.events[0].reason == "retry"


def test_same_failure_decided_twice_schedules_the_same_retry() -> None:
    s = spec()
    state, _, _ = run([(submit(s), 0), (outcome(s, "started"), 1)])
    failed = outcome(s, "failed", error_class="transient", error="503")
    a = decide(state, failed, policy=POLICY, now=later(2))
    b = decide(state, failed, policy=POLICY, now=later(2))
    assert a.events == b.events


def test_max_attempts_exhausted_fails_terminally_and_dead_letters() -> None:
    s = spec(max_attempts=2)
    inputs: list[tuple[Input, float]] = [(submit(s), 0)]
    for attempt in (1, 2):
        inputs += [
            (outcome(s, "started", attempt), attempt * 100),
            (outcome(s, "failed", attempt, error_class="transient", error=f"boom{attempt}"),
             attempt * 100 + 1),
            (timer(s, attempt + 1, later(attempt * 100 + 50)), attempt * 100 + 60),
        ]
    state, events, _ = run(inputs)
    assert kinds(events)[-2:] == ["JobFailed", "JobDeadLettered"]
    dead = events[-1]
    assert isinstance(dead, JobDeadLettered) and dead.attempts == 2
    assert dead.errors == ["transient: boom1", "transient: boom2"]
    assert state is not None and state.status == "failed" and state.dead_lettered


def test_permanent_error_fails_at_once() -> None:
    s = spec()
    state, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1),
                            (outcome(s, "failed", error_class="permanent", error="400"), 2)])
    assert isinstance(events[-1], JobFailed) and events[-1].terminal
    assert state is not None and state.status == "failed" and not state.dead_lettered


def test_circuit_open_interactive_goes_to_fallback_without_spending_an_attempt() -> None:
    s = spec(long_context=True, priority="interactive", max_attempts=1)
    state, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1),
                            (outcome(s, "failed", error_class="circuit_open"), 2)])
    fallback = events[-1]
    assert isinstance(fallback, JobQueued) and (fallback.pool, fallback.reason) == ("small", "fallback")
    assert state is not None and state.counted_attempts == 1 and state.attempt == 2
    # The fallback attempt can still fail transiently once budgeted attempts are spent: dead letter.
    state2, _events2, _ = run([(submit(s), 0), (outcome(s, "started"), 1),
                              (outcome(s, "failed", error_class="circuit_open"), 2),
                              (outcome(s, "started", 2), 3), (outcome(s, "succeeded", 2), 4)])
    assert state2 is not None and state2.status == "succeeded" and state2.pool == "small"


def test_circuit_open_batch_lane_schedules_a_retry() -> None:
    s = spec(long_context=True, priority="batch")
    _, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1),
                        (outcome(s, "failed", error_class="circuit_open"), 2)])
    assert isinstance(events[-1], JobRetryScheduled)


def test_lease_expiry_requeues_and_a_late_outcome_is_ignored() -> None:
    s = spec()
    state, events, decisions = run([
        (submit(s), 0), (outcome(s, "started", lease_ms=5000), 1),
        (timer(s, 0, later(3), "check"), 3),   # lease still valid
        (timer(s, 0, later(7), "check"), 7),   # expired
        (outcome(s, "succeeded", 1), 8),       # the dead worker's late result
    ])
    assert [d.note for d in decisions][2:] == ["noop", "applied", "stale"]
    assert kinds(events)[-2:] == ["JobLeaseExpired", "JobQueued"]
    assert isinstance(events[-1], JobQueued) and events[-1].reason == "lease_expired"
    assert state is not None and state.status == "queued" and state.attempt == 2


def test_lease_expiry_counts_as_an_attempt() -> None:
    s = spec(max_attempts=1)
    state, events, _ = run([(submit(s), 0), (outcome(s, "started", lease_ms=1000), 1),
                            (timer(s, 0, later(5), "check"), 5)])
    assert kinds(events)[-3:] == ["JobLeaseExpired", "JobFailed", "JobDeadLettered"]
    assert state is not None and state.status == "failed"


def test_a_dispatch_that_never_starts_is_dispatched_again_without_spending_an_attempt() -> None:
    s = spec(max_attempts=1)  # default dispatch timeout: 300 s
    state, events, decisions = run([
        (submit(s), 0),
        (timer(s, 0, later(200), "check"), 200),   # still within the dispatch timeout
        (timer(s, 0, later(301), "check"), 301),   # attempt 1 never started
        (outcome(s, "started", 1), 302),           # a late start of the lost attempt is stale
        (outcome(s, "started", 2), 303), (outcome(s, "succeeded", 2), 304),
    ])
    assert [d.note for d in decisions][1:4] == ["noop", "applied", "stale"]
    redispatch = [e for e in events if isinstance(e, JobQueued)][-1]
    assert (redispatch.attempt, redispatch.reason) == (2, "dispatch_timeout")
    assert state is not None and state.status == "succeeded" and state.counted_attempts == 1


@pytest.mark.parametrize("stage", ["queued", "retry_wait", "running", "succeeded"])
def test_cancellation_in_each_state(stage: str) -> None:
    s = spec()
    inputs: list[tuple[Input, float]] = [(submit(s), 0)]
    if stage in ("running", "retry_wait", "succeeded"):
        inputs.append((outcome(s, "started"), 1))
    if stage == "retry_wait":
        inputs.append((outcome(s, "failed", error_class="transient"), 2))
    if stage == "succeeded":
        inputs.append((outcome(s, "succeeded"), 2))
    state, _, _ = run(inputs)
    decision = decide(state, cancel(s), policy=POLICY, now=later(3))
    if stage in ("queued", "retry_wait"):
        assert kinds(list(decision.events)) == ["JobCancelled"]
        assert decision.state is not None and decision.state.status == "cancelled"
    elif stage == "running":
        assert kinds(list(decision.events)) == ["JobCancelRequested"]
        # The running attempt's outcome is discarded: the job ends cancelled.
        after = decide(decision.state, outcome(s, "succeeded"), policy=POLICY, now=later(4))
        assert kinds(list(after.events)) == ["JobCancelled"]
        again = decide(decision.state, cancel(s), policy=POLICY, now=later(4))
        assert again.note == "duplicate" and not again.events
    else:
        assert decision.note == "finished" and not decision.events


def test_cancel_for_an_unknown_job_is_answered_not_applied() -> None:
    assert decide(None, cancel(spec()), policy=POLICY, now=T0).note == "unknown_job"


def test_deadline_fails_a_queued_job_and_one_waiting_for_retry() -> None:
    s = spec(deadline=later(10))
    _state, events, _ = run([(submit(s), 0), (timer(s, 0, later(11), "check"), 11)])
    assert isinstance(events[-1], JobFailed) and events[-1].reason == "deadline_exceeded"
    expired = spec("late", deadline=later(-1))
    _, events, _ = run([(submit(expired), 0)])
    assert kinds(events) == ["JobSubmitted", "JobFailed"]
    # A retry that would be due after the deadline fails now instead of waiting.
    near = spec("near", deadline=later(3))
    _, events, _ = run([(submit(near), 0), (outcome(near, "started"), 1),
                        (outcome(near, "failed", error_class="rate_limited", retry_after_ms=5000), 2)])
    assert isinstance(events[-1], JobFailed) and events[-1].reason == "deadline_exceeded"


def test_illegal_transition_is_raised_and_not_applied() -> None:
    s = spec()
    state, events, _ = run([(submit(s), 0)])
    assert state is not None
    started = JobStarted(envelope=events[0].envelope.__class__(
        event_id="x", job_id=s.job_id, tenant_id=s.tenant_id, occurred_at=T0, sequence=99),
        attempt=7, worker="w", lease_deadline=T0, batch_id="b")
    with pytest.raises(IllegalTransition):
        apply(state, started)
    with pytest.raises(IllegalTransition):
        apply(None, events[1])


def test_duplicate_events_leave_state_unchanged() -> None:
    s = spec()
    state, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1)])
    assert state is not None
    for applied in events:
        assert apply(state, applied) is state


def test_fold_is_fast_enough_for_replay() -> None:
    s = spec()
    _, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1), (outcome(s, "failed"), 2),
                        (timer(s, 2, later(3)), 3), (outcome(s, "started", 2), 4),
                        (outcome(s, "succeeded", 2), 5)])
    rounds = 5000
    begin = time.perf_counter()
    for _ in range(rounds):
        fold(events)
    rate = rounds * len(events) / (time.perf_counter() - begin)
    # The target is 100k/s on an idle core; the bound is loose for a busy shared machine.
    assert rate > 30_000, f"fold ran at {rate:.0f} events/s"


# ---- properties -----------------------------------------------------------------------

SPEC = spec("prop", max_attempts=3, deadline=later(400))
CONFLICT = dataclasses.replace(SPEC, payload_sha256="0" * 64)  # same job id, other payload
ERROR_CLASSES = ["transient", "rate_limited", "permanent", "circuit_open", "cancelled", None]


def _outcomes() -> st.SearchStrategy[Input]:
    attempt = st.integers(min_value=1, max_value=5)
    # A final outcome may carry its call's start (within the worker's announce window)
    started_at = st.one_of(st.none(), st.builds(later, st.floats(min_value=0, max_value=120)))
    return st.one_of(
        st.builds(lambda a, ms: outcome(SPEC, "started", a, lease_ms=ms), attempt,
                  st.sampled_from([0, 1000, 60_000])),
        st.builds(lambda a, at: outcome(SPEC, "succeeded", a, started_at=at), attempt, started_at),
        st.builds(lambda a, c, ra, at: outcome(SPEC, "failed", a, error_class=c, retry_after_ms=ra,
                                               started_at=at),
                  attempt, st.sampled_from(ERROR_CLASSES), st.sampled_from([None, 0, 2000, 900_000]),
                  started_at),
        st.builds(lambda a: outcome(SPEC, "skipped", a), attempt),
        st.builds(lambda n, ok: outcome(SPEC, "callback", 1, callback_attempt=n, callback_ok=ok),
                  st.integers(1, 3), st.booleans()),
    )


def _inputs() -> st.SearchStrategy[Input]:
    return st.one_of(
        st.just(submit(SPEC)),
        st.just(submit(CONFLICT)),
        st.just(cancel(SPEC)),
        _outcomes(),
        st.builds(lambda a, d: timer(SPEC, a, later(d)), st.integers(1, 6), st.integers(0, 500)),
        st.builds(lambda d: timer(SPEC, 0, later(d), "check"), st.integers(0, 500)),
    )


STEPS = st.lists(st.tuples(_inputs(), st.floats(min_value=0, max_value=120)), max_size=40)


def _assert_legal(job: Job) -> None:
    assert job.status in ("queued", "running", "succeeded", "failed", "cancelled")
    assert job.terminal == (job.phase == "done")
    if job.status == "running":
        assert job.phase == "running" and job.lease_deadline is not None
    if job.phase == "retry_wait":
        assert job.status == "queued" and job.next_retry_at is not None
    if job.status == "queued" and job.phase == "dispatched":
        assert job.pool is not None and job.lane in ("interactive", "batch")
    assert job.counted_attempts <= job.max_attempts
    assert not job.dead_lettered or job.status == "failed"
    assert not job.cancel_requested or job.status in ("running", "cancelled")


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(steps=STEPS, first=st.booleans())
def test_any_input_sequence_leaves_a_legal_state_equal_to_the_fold(
    steps: list[tuple[Input, float]], first: bool
) -> None:
    clock = 0.0
    timed: list[tuple[Input, float]] = [(submit(SPEC), 0.0)] if first else []
    for command, step in steps:
        clock += step
        timed.append((command, clock))
    state, events, decisions = run(timed)
    event(f"final status: {state.status if state else None}")
    assert not any(d.note == "illegal" for d in decisions)
    if state is not None:
        _assert_legal(state)
    assert fold(events) == state
    assert [e.envelope.sequence for e in events] == list(range(1, len(events) + 1))
    assert len({e.envelope.event_id for e in events}) == len(events)
    terminal = [e for e in events if isinstance(e, JobSucceeded | JobCancelled)
                or (isinstance(e, JobFailed) and e.terminal)]
    assert len(terminal) <= 1
    assert sum(isinstance(e, JobSubmitted) for e in events) <= 1


@settings(max_examples=200, deadline=None)
@given(steps=STEPS)
def test_redelivering_every_input_twice_changes_nothing(steps: list[tuple[Input, float]]) -> None:
    clock = 0.0
    once: list[tuple[Input, float]] = [(submit(SPEC), 0.0)]
    for command, step in steps:
        clock += step
        once.append((command, clock))
    twice = [pair for pair in once for _ in range(2)]
    state_once, _events_once, _ = run(once)
    state_twice, events_twice, _ = run(twice)
    # Redelivery right after the original is a no-op, except for inputs that are legal
    # again later (a not-yet-due timer), which are deterministic anyway.
    assert fold(events_twice) == state_twice
    if state_twice is not None:
        _assert_legal(state_twice)
    lifecycle_types = (JobQueued, JobStarted, JobSucceeded, JobCancelRequested, JobLeaseExpired,
                       JobDeadLettered)
    ids_twice = [e.envelope.event_id for e in events_twice if isinstance(e, lifecycle_types)]
    assert len(ids_twice) == len(set(ids_twice))
    assert state_once is not None and state_twice is not None
    assert state_once.status == state_twice.status or state_twice.terminal or state_once.terminal


def test_copy_with_equals_dataclasses_replace() -> None:
    from processors.lifecycle import _copy_with

    s = spec()
    state, _, _ = run([(submit(s), 0), (outcome(s, "started"), 1)])
    assert state is not None
    changes: dict[str, object] = {"status": "succeeded", "phase": "done", "errors": ("x",), "result_ref": "r",
                                  "sequence": 9}
    evolved = _copy_with(state, changes)
    assert evolved == dataclasses.replace(state, **changes)  # type: ignore[arg-type]
    assert repr(evolved) == repr(dataclasses.replace(state, **changes))  # type: ignore[arg-type]
    assert state.status == "running" and evolved is not state
    with pytest.raises(KeyError):
        _copy_with(state, {"no_such_field": 1})
    with pytest.raises(dataclasses.FrozenInstanceError):
        evolved.status = "failed"  # type: ignore[misc]


@given(st.lists(st.tuples(st.sampled_from(["started", "failed", "succeeded", "timer", "cancel"]),
                          st.integers(1, 3)), max_size=12))
@settings(max_examples=60, deadline=None)
def test_owned_fold_equals_the_copying_fold(steps: list[tuple[str, int]]) -> None:
    # Given any history the processor emits (including illegal tries it refused)
    s = spec("owned", max_attempts=3)
    inputs: list[tuple[Input, float]] = [(submit(s), 0)]
    for at, (kind, attempt) in enumerate(steps, start=1):
        if kind == "timer":
            inputs.append((timer(s, attempt, later(at)), at))
        elif kind == "cancel":
            inputs.append((cancel(s), at))
        else:
            inputs.append((outcome(s, kind, attempt), at))
    _, events, _ = run(inputs)
    # When it is folded in place and by copies, also with every event delivered twice
    copied: Job | None = None
    owned: Job | None = None
    for applied in [e for e in events for _ in range(2)]:
        copied = apply(copied, applied)
        owned = apply_owned(owned, applied)
        # Then both paths agree after every event
        assert owned == copied
    assert fold(events) == copied


def test_an_illegal_event_changes_an_owned_state_not_at_all() -> None:
    s = spec()
    state, events, _ = run([(submit(s), 0), (outcome(s, "started"), 1), (outcome(s, "succeeded"), 2)])
    assert state is not None
    owned = fold(events[:-1])
    assert owned is not None
    snapshot = repr(owned)
    assert isinstance(events[2], JobStarted)
    again = dataclasses.replace(events[2], envelope=dataclasses.replace(events[2].envelope, sequence=99))
    with pytest.raises(IllegalTransition):
        apply_owned(owned, again)  # a second start of the running attempt
    assert repr(owned) == snapshot
