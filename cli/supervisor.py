"""A small process supervisor: start children in order, restart crashes, stop cleanly.

Each child runs in its own session so a terminal's Ctrl-C reaches only the supervisor,
which then stops children in reverse start order (SIGTERM, then SIGKILL after a grace
period) so that nothing is left behind.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from rich.console import Console

from brigade.errors import BrigadeError

_LOUD_WORDS = ("ERROR", "CRITICAL", "Traceback", "WARNING", "ready", "Uvicorn running")


@dataclass(frozen=True, kw_only=True)
class ChildSpec:
    """One supervised process."""

    name: str
    argv: list[str]
    ready: Callable[[], bool] | None = None
    ready_timeout_s: float = 120.0
    env: dict[str, str] = field(default_factory=dict)


@dataclass
class _Child:
    spec: ChildSpec
    process: subprocess.Popen[bytes] | None = None
    restarts: int = 0
    restart_at: float | None = None
    started_at: float = 0.0
    pump: threading.Thread | None = None


class Supervisor:
    """Runs ``ChildSpec`` processes until asked to stop."""

    def __init__(
        self,
        *,
        log_dir: Path,
        console: Console,
        backoff_base_s: float = 1.0,
        backoff_cap_s: float = 30.0,
        grace_s: float = 20.0,
    ) -> None:
        self._log_dir = log_dir
        self._console = console
        self._backoff_base_s = backoff_base_s
        self._backoff_cap_s = backoff_cap_s
        self._grace_s = grace_s
        self._children: list[_Child] = []
        self._stopping = threading.Event()

    def start(self, spec: ChildSpec) -> None:
        """Start ``spec`` and wait until its readiness probe passes."""
        child = _Child(spec)
        self._children.append(child)
        self._spawn(child)
        if spec.ready is not None:
            self._wait_ready(child)

    def run_until_stopped(self, *, poll_s: float = 0.5) -> None:
        """Watch children, restarting crashed ones with backoff, until ``stop`` is called."""
        while not self._stopping.wait(poll_s):
            for child in self._children:
                self._watch(child)

    def kill(self, name: str) -> int | None:
        """SIGKILL the named child's process group, as a crash would; its pid, or None if down.

        The watch loop then restarts it with backoff, like any crashed child.
        """
        for child in self._children:
            process = child.process
            if child.spec.name == name and process is not None and process.poll() is None:
                _signal_group(process, signal.SIGKILL)
                # Reaped before returning, so a second kill right after finds it down.
                process.wait()
                return process.pid
        return None

    def signal(self, name: str, sig: signal.Signals) -> int | None:
        """Send ``sig`` to the named child's process (not its group); its pid, or None if down."""
        for child in self._children:
            process = child.process
            if child.spec.name == name and process is not None and process.poll() is None:
                process.send_signal(sig)
                return process.pid
        return None

    def names(self) -> list[str]:
        """The supervised children's names."""
        return [child.spec.name for child in self._children]

    def request_stop(self) -> None:
        """Ask ``run_until_stopped`` to return (safe from a signal handler)."""
        self._stopping.set()

    def stop_all(self) -> None:
        """Stop every child, newest first; SIGKILL whatever outlives the grace period."""
        self._stopping.set()
        for child in reversed(self._children):
            _signal_group(child.process, signal.SIGTERM)
        deadline = time.monotonic() + self._grace_s
        for child in reversed(self._children):
            process = child.process
            if process is None:
                continue
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self._console.print(f"[yellow]{child.spec.name} ignored SIGTERM; killing[/yellow]")
                _signal_group(process, signal.SIGKILL)
                process.wait()
            # Grandchildren (uvicorn, Faust) share the group: make sure none outlive it.
            _signal_group(process, signal.SIGKILL)
            if child.pump is not None:
                child.pump.join(timeout=5)

    def _spawn(self, child: _Child) -> None:
        spec = child.spec
        self._log_dir.mkdir(parents=True, exist_ok=True)
        log = (self._log_dir / f"{spec.name}.log").open("ab")
        process = subprocess.Popen(
            spec.argv,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            env={**os.environ, **spec.env},
            start_new_session=True,
        )
        child.process = process
        child.started_at = time.monotonic()
        child.pump = threading.Thread(target=self._pump, args=(spec.name, process.stdout, log), daemon=True)
        child.pump.start()

    def _pump(self, name: str, stream: IO[bytes] | None, log: IO[bytes]) -> None:
        if stream is None:
            return
        with log, stream:
            for raw in stream:
                log.write(raw)
                log.flush()
                line = raw.decode(errors="replace").rstrip()
                if any(word in line for word in _LOUD_WORDS):
                    self._console.print(f"{name:>11} | {line[:200]}", markup=False, highlight=False)

    def _wait_ready(self, child: _Child) -> None:
        spec = child.spec
        assert spec.ready is not None
        deadline = time.monotonic() + spec.ready_timeout_s
        while time.monotonic() < deadline and not self._stopping.is_set():
            if child.process is not None and child.process.poll() is not None:
                raise BrigadeError(f"{spec.name} exited during start-up; see {self._log_dir}/{spec.name}.log")
            if spec.ready():
                self._console.print(f"[green]{spec.name} ready[/green]")
                return
            time.sleep(0.2)
        raise BrigadeError(f"{spec.name} not ready after {spec.ready_timeout_s}s")

    def _watch(self, child: _Child) -> None:
        process = child.process
        if process is None or process.poll() is None:
            if child.restart_at is not None and time.monotonic() >= child.restart_at:
                child.restart_at = None
                self._console.print(f"[yellow]restarting {child.spec.name}[/yellow]")
                self._spawn(child)
            return
        if child.restart_at is not None:
            return
        # Whatever the dead child started (its session's other processes) goes with it.
        _signal_group(process, signal.SIGKILL)
        # A child that ran a while before dying gets a fresh backoff.
        if time.monotonic() - child.started_at > 60:
            child.restarts = 0
        delay = min(self._backoff_cap_s, self._backoff_base_s * 2**child.restarts)
        child.restarts += 1
        child.restart_at = time.monotonic() + delay
        child.process = None
        self._console.print(
            f"[red]{child.spec.name} exited with code {process.returncode}; "
            f"restarting in {delay:.1f}s[/red]"
        )


def _signal_group(process: subprocess.Popen[bytes] | None, signum: int) -> None:
    if process is None:
        return
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signum)
