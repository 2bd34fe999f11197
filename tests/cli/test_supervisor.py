"""The supervisor restarts crashed children and leaves no process behind."""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import pytest
from rich.console import Console

from brigade.errors import BrigadeError
from cli.supervisor import ChildSpec, Supervisor
from testkit.support import poll_until


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _script(tmp_path: Path, name: str, body: str) -> list[str]:
    path = tmp_path / f"{name}.py"
    path.write_text(body)
    return [sys.executable, str(path)]


def test_crashed_child_is_restarted_and_everything_stops(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    # A child that records each start, spawns a grandchild, and crashes on its first run.
    crashy = _script(tmp_path, "crashy", f"""
import os, subprocess, sys, time
sleeper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(600)"])
with open({str(marker)!r}, "a") as f:
    f.write(f"{{os.getpid()}} {{sleeper.pid}}\\n")
if sum(1 for _ in open({str(marker)!r})) == 1:
    sys.exit(3)
print("ready", flush=True)
time.sleep(600)
""")
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    supervisor = Supervisor(log_dir=tmp_path / "logs", console=console, backoff_base_s=0.1, grace_s=5)
    supervisor.start(ChildSpec(name="crashy", argv=crashy))
    import threading

    watcher = threading.Thread(target=supervisor.run_until_stopped, kwargs={"poll_s": 0.05})
    watcher.start()
    try:
        poll_until(lambda: marker.exists() and len(marker.read_text().splitlines()) == 2)
    finally:
        supervisor.request_stop()
        watcher.join()
        supervisor.stop_all()
        console.file.close()
    pids = [int(p) for line in marker.read_text().splitlines() for p in line.split()]
    poll_until(lambda: not any(_alive(pid) for pid in pids), timeout_s=10)
    assert "ready" in (tmp_path / "logs" / "crashy.log").read_text()


def test_child_ignoring_sigterm_is_killed(tmp_path: Path) -> None:
    stubborn = _script(tmp_path, "stubborn", """
import signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print("ready", flush=True)
time.sleep(600)
""")
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    supervisor = Supervisor(log_dir=tmp_path / "logs", console=console, grace_s=0.5)
    log = tmp_path / "logs" / "stubborn.log"
    supervisor.start(ChildSpec(name="stubborn", argv=stubborn,
                               ready=lambda: log.exists() and "ready" in log.read_text()))
    started = time.monotonic()
    supervisor.stop_all()
    console.file.close()
    assert time.monotonic() - started < 10


def test_child_that_dies_during_start_up_is_reported(tmp_path: Path) -> None:
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115
    supervisor = Supervisor(log_dir=tmp_path / "logs", console=console)
    with pytest.raises(BrigadeError, match="exited during start-up"):
        supervisor.start(ChildSpec(name="dies", argv=[sys.executable, "-c", "raise SystemExit(1)"],
                                   ready=lambda: False))
    supervisor.stop_all()
    console.file.close()


def test_kill_one_child_by_name_and_it_comes_back(tmp_path: Path) -> None:
    import threading

    marker = tmp_path / "starts"
    sleeper = _script(tmp_path, "sleeper", f"""
import os, time
with open({str(marker)!r}, "a") as f:
    f.write(f"{{os.getpid()}}\\n")
time.sleep(600)
""")
    console = Console(file=open(os.devnull, "w"))  # noqa: SIM115 - closed with the console
    supervisor = Supervisor(log_dir=tmp_path / "logs", console=console, backoff_base_s=0.1, grace_s=5)
    supervisor.start(ChildSpec(name="a", argv=sleeper))
    supervisor.start(ChildSpec(name="b", argv=sleeper))
    watcher = threading.Thread(target=supervisor.run_until_stopped, kwargs={"poll_s": 0.05})
    watcher.start()
    try:
        poll_until(lambda: marker.exists() and len(marker.read_text().splitlines()) == 2, what="two starts")
        first = supervisor.kill("a")
        # The killed child is already reaped: killing it again finds it down
        assert first is not None and not _alive(first)
        assert supervisor.kill("nobody") is None
        poll_until(lambda: len(marker.read_text().splitlines()) == 3, what="a restart")
        pids = [int(line) for line in marker.read_text().splitlines()]
        assert all(_alive(pid) for pid in pids if pid != first)
    finally:
        supervisor.request_stop()
        watcher.join()
        supervisor.stop_all()
        console.file.close()
