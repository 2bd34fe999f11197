"""A circuit breaker per model endpoint: pure state, injected clock, transitions as values.

States: ``closed`` (calls flow) → ``open`` after ``failure_threshold`` consecutive failures,
or when failures make up at least ``error_ratio`` of the calls in the last ``window_s``
seconds (once the window holds ``min_calls`` calls) → ``half_open`` once ``reset_timeout_s``
has passed, letting one probe through at a time → ``closed`` when the probe succeeds, or
``open`` again when it fails.

What counts:

* ``Transient`` errors (timeouts, 5xx, connection errors) are failures.
* ``RateLimited`` (429) is *not* a failure: the service is alive and asked us to slow down.
  A rate-limited probe frees the probe slot and leaves the breaker half-open.
* ``Permanent`` errors (bad input) are successes for health purposes: the service answered.

Usage (the caller emits records for the transitions it gets back)::

    admission = breaker.admit()
    if admission.transition: emit(admission.transition)
    if not admission.allowed: route to fallback / delay, retry in admission.retry_in seconds
    else:
        try: result = await client.infer(batch)
        except ModelError as exc: transition = breaker.record(admission.ticket, exc)
        else: transition = breaker.record(admission.ticket, None)

Tickets carry the breaker's generation, so the result of a call admitted before a state
change (a slow call finishing after the breaker opened) cannot close or re-open the breaker.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from brigade.errors import ConfigError, RateLimited, Transient
from brigade.ids import event_id
from schemas.records import CircuitClosed, CircuitHalfOpened, CircuitOpened


class State(StrEnum):
    """Breaker states."""

    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"


@dataclass(frozen=True)
class Transition:
    """A state change, for the caller to publish as a Circuit* record."""

    previous: State
    state: State
    at: float
    reason: str
    failures: int
    generation: int


@dataclass(frozen=True)
class Admission:
    """Whether a call may proceed; ``ticket`` goes back to :meth:`CircuitBreaker.record`."""

    allowed: bool
    ticket: int
    probe: bool = False
    transition: Transition | None = None
    retry_in: float = 0.0


class CircuitBreaker:
    """Breaker for one model endpoint. Not thread-safe; use it from one event loop."""

    def __init__(
        self,
        *,
        failure_threshold: int = 5,
        error_ratio: float = 0.5,
        window_s: float = 30.0,
        min_calls: int = 20,
        reset_timeout_s: float = 10.0,
        probe_timeout_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        _require(failure_threshold >= 1, "failure_threshold", "must be >= 1", failure_threshold)
        _require(0.0 < error_ratio <= 1.0, "error_ratio", "must be in (0, 1]", error_ratio)
        _require(window_s > 0, "window_s", "must be positive", window_s)
        _require(min_calls >= 1, "min_calls", "must be >= 1", min_calls)
        _require(reset_timeout_s > 0, "reset_timeout_s", "must be positive", reset_timeout_s)
        probe_timeout = reset_timeout_s if probe_timeout_s is None else probe_timeout_s
        _require(probe_timeout > 0, "probe_timeout_s", "must be positive", probe_timeout)
        self.failure_threshold = failure_threshold
        self.error_ratio = error_ratio
        self.window_s = window_s
        self.min_calls = min_calls
        self.reset_timeout_s = reset_timeout_s
        self.probe_timeout_s = probe_timeout
        self._clock = clock
        self.state = State.CLOSED
        self.generation = 0
        self.consecutive_failures = 0
        self._calls: deque[tuple[float, bool]] = deque()  # (time, failed) within the window
        self._opened_at = 0.0
        self._probe_since: float | None = None

    def admit(self) -> Admission:
        """Decide whether one call may go to the model now."""
        now = self._clock()
        if self.state is State.CLOSED:
            return Admission(allowed=True, ticket=self.generation)
        transition = None
        if self.state is State.OPEN:
            wait = self._opened_at + self.reset_timeout_s - now
            if wait > 0:
                return Admission(allowed=False, ticket=self.generation, retry_in=wait)
            transition = self._move(State.HALF_OPEN, now, "reset timeout elapsed")
        if self._probe_since is not None and now - self._probe_since < self.probe_timeout_s:
            wait = self._probe_since + self.probe_timeout_s - now
            return Admission(allowed=False, ticket=self.generation, transition=transition, retry_in=wait)
        # No probe in flight, or the last one never reported back: let one through.
        self._probe_since = now
        return Admission(allowed=True, ticket=self.generation, probe=True, transition=transition)

    def record(self, ticket: int, error: BaseException | None) -> Transition | None:
        """Record the outcome of an admitted call (``error=None`` for success)."""
        if isinstance(error, RateLimited):
            self.record_rate_limited(ticket)
            return None
        if isinstance(error, Transient):
            return self.record_failure(ticket, reason=str(error) or type(error).__name__)
        return self.record_success(ticket)

    def record_success(self, ticket: int) -> Transition | None:
        """The service answered."""
        if ticket != self.generation or self.state is State.OPEN:
            return None
        now = self._clock()
        if self.state is State.HALF_OPEN:
            return self._move(State.CLOSED, now, "probe succeeded")
        self.consecutive_failures = 0
        self._remember(now, failed=False)
        return None

    def record_failure(self, ticket: int, *, reason: str = "") -> Transition | None:
        """The service failed (timeout, 5xx, connection error)."""
        if ticket != self.generation or self.state is State.OPEN:
            return None
        now = self._clock()
        self.consecutive_failures += 1
        if self.state is State.HALF_OPEN:
            return self._move(State.OPEN, now, f"probe failed: {reason}")
        self._remember(now, failed=True)
        if self.consecutive_failures >= self.failure_threshold:
            return self._move(State.OPEN, now, f"{self.consecutive_failures} consecutive failures: {reason}")
        ratio = self._failure_ratio()
        if ratio is not None and ratio >= self.error_ratio:
            return self._move(State.OPEN, now, f"error ratio {ratio:.2f} over {self.window_s:g}s: {reason}")
        return None

    def record_rate_limited(self, ticket: int) -> None:
        """A 429: not a failure. A rate-limited probe frees the slot for the next probe."""
        if ticket == self.generation and self.state is State.HALF_OPEN:
            self._probe_since = None

    def _remember(self, now: float, *, failed: bool) -> None:
        self._calls.append((now, failed))
        while self._calls and self._calls[0][0] <= now - self.window_s:
            self._calls.popleft()

    def _failure_ratio(self) -> float | None:
        if len(self._calls) < self.min_calls:
            return None
        return sum(1 for _, failed in self._calls if failed) / len(self._calls)

    def _move(self, state: State, now: float, reason: str) -> Transition:
        transition = Transition(
            previous=self.state,
            state=state,
            at=now,
            reason=reason,
            failures=self.consecutive_failures,
            generation=self.generation + 1,
        )
        self.state = state
        self.generation += 1
        self._probe_since = None
        if state is State.OPEN:
            self._opened_at = now
        if state is State.CLOSED:
            self.consecutive_failures = 0
            self._calls.clear()
        return transition


def _require(ok: bool, option: str, rule: str, value: object) -> None:
    if not ok:
        raise ConfigError(f"CircuitBreaker option {option} {rule}, got {value!r}")


CircuitRecord = CircuitOpened | CircuitHalfOpened | CircuitClosed
_RECORDS: dict[State, type[CircuitRecord]] = {
    State.OPEN: CircuitOpened,
    State.HALF_OPEN: CircuitHalfOpened,
    State.CLOSED: CircuitClosed,
}


def circuit_record(
    transition: Transition, *, pool: str, model: str, worker: str, occurred_at: datetime | None = None
) -> CircuitRecord:
    """The ``schemas.records`` event for ``transition``, with a deterministic event id.

    The id derives from pool, model, worker, generation and the transition's clock reading, so
    publishing the same ``Transition`` twice dedupes downstream while a restarted worker (whose
    generations start again at 1) does not collide with its previous life.
    """
    cls = _RECORDS[transition.state]
    return cls(
        event_id=event_id(
            f"circuit:{pool}:{model}:{worker}",
            transition.state.value,
            transition.generation,
            repr(transition.at),
        ),
        occurred_at=occurred_at or datetime.now(UTC),
        pool=pool,
        model=model,
        worker=worker,
        reason=transition.reason,
        failures=transition.failures,
    )
