"""The embedded projector's health, as ``/readyz`` checks and ``/metrics`` gauges.

The API process runs the projector on a thread when ClickHouse is embedded (chDB). It
retries a failing insert forever, so an operator needs to see that it is retrying, how far
behind it is and why; and a projector whose loop died must make the process unready.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, Gauge


class _Health(Protocol):
    running: bool
    retrying: bool
    lag: int | None
    insert_failures: int
    last_error: str | None
    last_error_at: float | None


class _Projector(Protocol):
    def health(self) -> Any: ...


class ProjectorProbe:
    """Holds the embedded projector (if any) and reports on it."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.projector: _Projector | None = None
        # Read at scrape time, so the API port and the anonymous operator port agree.
        gauges = {
            "brigade_projector_up": ("1 while the embedded projector's loop runs.",
                                     lambda h: 1.0 if h.running else 0.0),
            "brigade_projector_retrying": ("1 while an insert is being retried.",
                                           lambda h: 1.0 if h.retrying else 0.0),
            "brigade_projector_lag": ("Job events in the log not yet projected.",
                                      lambda h: float(h.lag or 0)),
            "brigade_projector_insert_failures": ("Failed inserts since start.",
                                                  lambda h: float(h.insert_failures)),
            "brigade_projector_last_error_timestamp_seconds": (
                "When the projector last failed (0: never).", lambda h: float(h.last_error_at or 0)),
        }
        for name, (documentation, read) in gauges.items():
            Gauge(name, documentation, registry=registry).set_function(self._reader(read))

    def _reader(self, read: Callable[[_Health], float]) -> Callable[[], float]:
        def value() -> float:
            return float("nan") if self.projector is None else read(self.projector.health())
        return value

    def checks(self) -> tuple[dict[str, str], bool]:
        """``/readyz`` checks, and whether they allow readiness (only a dead loop does not)."""
        if self.projector is None:
            return {}, True
        health: _Health = self.projector.health()
        state = "ok" if not health.retrying else f"retrying: {health.last_error}"
        checks = {"projector": state if health.running else f"stopped: {health.last_error}",
                  "projector_lag": "unknown" if health.lag is None else str(health.lag)}
        if health.last_error is not None:
            checks["projector_last_error"] = health.last_error
        return checks, health.running
