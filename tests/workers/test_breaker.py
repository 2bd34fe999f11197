"""The circuit breaker: examples of each transition, then a hypothesis state machine."""

from __future__ import annotations

import pytest
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from brigade.errors import ConfigError, Permanent, RateLimited, Transient
from schemas.records import CircuitClosed, CircuitHalfOpened, CircuitOpened
from workers.breaker import CircuitBreaker, State, circuit_record


class Clock:
    """A clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def breaker(clock: Clock, **options: float) -> CircuitBreaker:
    defaults: dict[str, float] = {"failure_threshold": 3, "min_calls": 10, "reset_timeout_s": 5.0}
    return CircuitBreaker(clock=clock, **{**defaults, **options})  # type: ignore[arg-type]


def fail(b: CircuitBreaker) -> object:
    admission = b.admit()
    assert admission.allowed
    return b.record(admission.ticket, Transient("HTTP 503"))


def test_opens_after_consecutive_failures_then_half_opens_and_closes() -> None:
    clock = Clock()
    b = breaker(clock)
    assert fail(b) is None
    assert fail(b) is None
    opened = fail(b)
    assert opened is not None and opened.state is State.OPEN and opened.failures == 3
    # While open nothing passes, and the caller learns how long to wait.
    denied = b.admit()
    assert not denied.allowed and denied.retry_in == pytest.approx(5.0)
    clock.now += 5.0
    probe = b.admit()
    assert probe.allowed and probe.probe
    assert probe.transition is not None and probe.transition.state is State.HALF_OPEN
    # Only one probe at a time.
    assert not b.admit().allowed
    closed = b.record(probe.ticket, None)
    assert closed is not None and closed.state is State.CLOSED
    assert b.admit().allowed


def test_failed_probe_reopens_and_restarts_the_timer() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=1)
    fail(b)
    clock.now += 5.0
    probe = b.admit()
    reopened = b.record(probe.ticket, Transient("timeout"))
    assert reopened is not None and reopened.previous is State.HALF_OPEN and reopened.state is State.OPEN
    clock.now += 4.9
    assert not b.admit().allowed


def test_rate_limits_are_not_failures_and_free_the_probe_slot() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=1)
    for _ in range(50):
        admission = b.admit()
        assert b.record(admission.ticket, RateLimited("429", retry_after=1.0)) is None
    assert b.state is State.CLOSED
    fail(b)
    clock.now += 5.0
    probe = b.admit()
    assert b.record(probe.ticket, RateLimited("429")) is None
    assert b.state is State.HALF_OPEN
    assert b.admit().allowed


def test_permanent_errors_count_as_the_service_answering() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=2)
    fail(b)
    admission = b.admit()
    b.record(admission.ticket, Permanent("HTTP 400"))
    assert fail(b) is None
    assert b.state is State.CLOSED


def test_error_ratio_over_window_opens_with_minimum_calls() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=100, min_calls=10, error_ratio=0.5, window_s=10.0)
    # Alternate success and failure: 50% errors, but only once 10 calls are in the window.
    transitions = []
    for i in range(10):
        clock.now += 0.1
        admission = b.admit()
        transitions.append(b.record(admission.ticket, Transient("x") if i % 2 else None))
    assert [t is not None for t in transitions] == [False] * 9 + [True]
    assert b.state is State.OPEN


def test_old_calls_leave_the_window() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=100, min_calls=4, error_ratio=0.5, window_s=10.0)
    for _ in range(3):
        fail(b)
    clock.now += 11.0
    for _ in range(3):
        b.record(b.admit().ticket, None)
    assert fail(b) is None  # 1 failure of 4 in the window
    assert b.state is State.CLOSED


def test_stale_results_cannot_flip_the_breaker() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=1)
    slow = b.admit()
    fail(b)
    clock.now += 5.0
    probe = b.admit()
    # The slow call admitted while closed finishes now: it must not close the breaker.
    assert b.record(slow.ticket, None) is None
    assert b.state is State.HALF_OPEN
    assert b.record(probe.ticket, None) is not None


def test_lost_probe_is_replaced_after_probe_timeout() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=1, probe_timeout_s=2.0)
    fail(b)
    clock.now += 5.0
    assert b.admit().probe
    clock.now += 1.0
    assert not b.admit().allowed
    clock.now += 1.0
    assert b.admit().probe


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("failure_threshold", 0),
        ("error_ratio", 0.0),
        ("error_ratio", 1.5),
        ("window_s", 0),
        ("min_calls", 0),
        ("reset_timeout_s", -1),
        ("probe_timeout_s", 0),
    ],
)
def test_bad_options_are_rejected_by_name(option: str, value: float) -> None:
    with pytest.raises(ConfigError, match=option):
        CircuitBreaker(**{option: value})  # type: ignore[arg-type]


def test_transitions_become_circuit_records_with_stable_ids() -> None:
    clock = Clock()
    b = breaker(clock, failure_threshold=1)
    opened = fail(b)
    clock.now += 5.0
    half = b.admit().transition
    assert opened is not None and half is not None
    record = circuit_record(opened, pool="default", model="m", worker="w1")  # type: ignore[arg-type]
    again = circuit_record(opened, pool="default", model="m", worker="w1")  # type: ignore[arg-type]
    assert isinstance(record, CircuitOpened) and record.failures == 1
    assert record.event_id == again.event_id
    assert isinstance(circuit_record(half, pool="default", model="m", worker="w1"), CircuitHalfOpened)
    probe_ok = b.record(b.generation, None)
    assert probe_ok is not None
    assert isinstance(circuit_record(probe_ok, pool="default", model="m", worker="w1"), CircuitClosed)


ERRORS = st.sampled_from([None, Transient("5xx"), RateLimited("429", retry_after=1.0), Permanent("400")])


class BreakerMachine(RuleBasedStateMachine):
    """Random admits, outcomes (possibly stale) and clock moves keep the invariants."""

    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.b = CircuitBreaker(
            failure_threshold=3,
            min_calls=6,
            error_ratio=0.5,
            window_s=20.0,
            reset_timeout_s=5.0,
            clock=self.clock,
        )
        self.tickets: list[tuple[int, bool]] = []  # (ticket, probe)
        self.state = State.CLOSED
        self.opened_at: float | None = None
        self.consecutive = 0

    def _apply(self, transition: object) -> None:
        if transition is None:
            return
        assert transition.previous is self.state  # type: ignore[attr-defined]
        assert transition.state is not self.state  # type: ignore[attr-defined]
        self.state = transition.state  # type: ignore[attr-defined]
        if self.state is State.OPEN:
            self.opened_at = self.clock.now
        if self.state is State.HALF_OPEN:
            # Half-open only after the reset timeout.
            assert self.opened_at is not None and self.clock.now - self.opened_at >= 5.0

    @rule()
    def admit(self) -> None:
        admission = self.b.admit()
        self._apply(admission.transition)
        if self.state is State.OPEN:
            assert not admission.allowed
        if admission.allowed:
            if self.state is State.HALF_OPEN:
                # At most one probe outstanding per half-open period.
                assert admission.probe
            self.tickets.append((admission.ticket, admission.probe))

    @precondition(lambda self: self.tickets)
    @rule(data=st.data(), error=ERRORS)
    def finish(self, data: st.DataObject, error: BaseException | None) -> None:
        index = data.draw(st.integers(0, len(self.tickets) - 1))
        ticket, _ = self.tickets.pop(index)
        before = self.b.state
        transition = self.b.record(ticket, error)
        self._apply(transition)
        if isinstance(error, RateLimited) or error is None or isinstance(error, Permanent):
            # Rate limits and answers never open the breaker.
            assert not (transition is not None and transition.state is State.OPEN)
        if isinstance(error, Transient) and not isinstance(error, RateLimited):
            assert not (transition is not None and transition.state is State.CLOSED)
        if ticket != self.b.generation - (1 if transition else 0):
            assert transition is None  # stale tickets never move the breaker
        if before is State.OPEN:
            assert transition is None

    @rule(seconds=st.floats(0.0, 8.0))
    def tick(self, seconds: float) -> None:
        self.clock.now += seconds

    @invariant()
    def mirrors_state(self) -> None:
        assert self.b.state is self.state
        if self.state is State.CLOSED:
            assert self.b.consecutive_failures < 3


TestBreakerMachine = BreakerMachine.TestCase
TestBreakerMachine.settings = hsettings(max_examples=200, stateful_step_count=40, deadline=None)
