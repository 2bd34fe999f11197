"""``/readyz`` from a cached probe: one broker round trip every few seconds, not one per call.

A background thread asks the broker for its topics every ``interval_s`` and keeps the
answer; ``/readyz`` reads it. A probe older than ``stale_s`` (the thread stuck on a dead
broker) counts as not ready.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from brigade.errors import KafkaError


class Readiness:
    """The last answer of ``probe`` (topic names), refreshed in the background."""

    def __init__(
        self,
        *,
        probe: Callable[[], set[str]],
        required: list[str],
        interval_s: float = 2.0,
        stale_s: float = 10.0,
    ) -> None:
        self._probe = probe
        self.required = required
        self.interval_s = interval_s
        self.stale_s = stale_s
        self._checks: dict[str, str] = {"broker": "not probed yet"}
        self._at = -float("inf")
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="readiness", daemon=True)

    def start(self) -> None:
        """Probe once now, then in the background."""
        self.sample()
        self._thread.start()

    def stop(self) -> None:
        """Stop probing."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)

    def sample(self) -> None:
        """Probe the broker now and keep the answer."""
        try:
            names = self._probe()
        except KafkaError as exc:
            checks = {"broker": str(exc)}
        else:
            checks = {topic: ("ok" if topic in names else "missing") for topic in self.required}
            checks["broker"] = "ok"
        self._checks, self._at = checks, time.monotonic()

    def state(self) -> tuple[bool, dict[str, str]]:
        """Whether the API is ready, and the checks behind the answer."""
        checks = dict(self._checks)
        if time.monotonic() - self._at > self.stale_s:
            checks["broker"] = f"no answer for over {self.stale_s:g}s"
        return all(v == "ok" for v in checks.values()), checks

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            self.sample()
