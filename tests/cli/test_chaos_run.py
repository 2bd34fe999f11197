"""A short ``brigade chaos`` run through real processes: the ledger must come out clean."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = [pytest.mark.chaos, pytest.mark.slow]


@pytest.mark.timeout(1200)
def test_short_chaos_run_loses_nothing_and_decides_nothing_twice(tmp_path: Path) -> None:
    # Given a fresh stack, 300 jobs over 50 s, and every kind of fault at least once
    report_path = tmp_path / "report.json"
    run = subprocess.run(
        [sys.executable, "-m", "cli", "chaos", "--jobs", "300", "--rate", "6", "--deadline", "240",
         "--keep", str(tmp_path / "stack"), "--report", str(report_path)],
        capture_output=True, text=True, timeout=1150, check=False,
    )
    assert report_path.exists(), run.stdout[-3000:] + run.stderr[-3000:]
    report = json.loads(report_path.read_text())
    # Then the faults really happened
    assert {"kill-worker", "kill-processor", "kill-api", "stop-broker"} <= set(report["fault_kinds"])
    assert all(not f["detail"].startswith("failed") for f in report["faults"]), report["faults"]
    # And the ledger, read from the log, the store, the emulator and the receiver, is clean
    summary = {k: report[k] for k in ("submitted", "terminal", "lost", "decided_twice", "duplicate_results",
                                      "results_missing", "callbacks_missing", "replay_equals_live")}
    assert report["submitted"] == 300, summary
    # And nothing is lost, decided or written twice, missing, or projected differently from the log
    hard = {k: v for k, v in summary.items() if k != "callbacks_missing"}
    # (a failure shows every message about the suspect jobs: the kept stack may not survive)
    assert report["lost"] == 0 and report["results_missing"] == 0, (hard, report["traces"])
    assert report["decided_twice"] == 0 and report["duplicate_results"] == 0, (hard, report["traces"])
    assert report["replay_equals_live"], hard
    if report["callbacks_missing"]:
        # Open (issue 11): a worker now and then stops reading some job-events partitions after
        # the fault window, so their callbacks are never sent (the workers' task dumps are in
        # the kept stack's supervisor log). Reported, never silently passed.
        assert run.returncode == 1, "an unclean ledger must fail the chaos command"
        pytest.xfail(f"issue 11 open: callbacks never delivered: {report['callbacks_missing_jobs']}")
    assert report["clean"], summary
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
