"""The embedded projector's health, as ``/readyz`` checks and ``/metrics`` gauges.

The API process runs the projector on a thread when ClickHouse is embedded (chDB). It
retries a failing insert forever, so an operator needs to see that it is retrying, how far
behind it is and why; and a projector whose loop died must make the process unready.
"""

from __future__ import annotations

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
        self._up = Gauge("brigade_projector_up", "1 while the embedded projector's loop runs.",
                         registry=registry)
        self._retrying = Gauge("brigade_projector_retrying", "1 while an insert is being retried.",
                               registry=registry)
        self._lag = Gauge("brigade_projector_lag", "Job events in the log not yet projected.",
                          registry=registry)
        self._failures = Gauge("brigade_projector_insert_failures", "Failed inserts since start.",
                               registry=registry)
        self._last_error_at = Gauge("brigade_projector_last_error_timestamp_seconds",
                                    "When the projector last failed (0: never).", registry=registry)

    def checks(self) -> tuple[dict[str, str], bool]:
        """``/readyz`` checks, and whether they allow readiness (only a dead loop does not)."""
        if self.projector is None:
            return {}, True
        health: _Health = self.projector.health()
        self.update_metrics(health)
        state = "ok" if not health.retrying else f"retrying: {health.last_error}"
        checks = {"projector": state if health.running else f"stopped: {health.last_error}",
                  "projector_lag": "unknown" if health.lag is None else str(health.lag)}
        if health.last_error is not None:
            checks["projector_last_error"] = health.last_error
        return checks, health.running

    def update_metrics(self, health: _Health | None = None) -> None:
        """Refresh the gauges (before ``/metrics`` renders)."""
        if self.projector is None:
            return
        health = health or self.projector.health()
        self._up.set(1 if health.running else 0)
        self._retrying.set(1 if health.retrying else 0)
        self._lag.set(health.lag or 0)
        self._failures.set(health.insert_failures)
        self._last_error_at.set(health.last_error_at or 0)
