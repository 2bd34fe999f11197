"""``brigade replay/query/audit`` end to end, each in its own process (its own chDB)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.simulate import stream
from testkit.support import settings_env
from tests.projections.support import produce

ROOT = Path(__file__).resolve().parents[2]


def _brigade(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    env = settings_env(settings, COLUMNS="200")
    return subprocess.run(
        [sys.executable, "-c", "from cli.main import main; main()", *args],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_rebuild_query_audit_verify(settings: Settings, topics: Topology) -> None:
    produce(settings, topics.job_events, stream(10, seed=5))
    rebuilt = _brigade(settings, "replay", "--into", "brigade")
    assert rebuilt.returncode == 0, rebuilt.stderr + rebuilt.stdout
    assert "rebuilt brigade: 62 events" in rebuilt.stdout
    report = _brigade(settings, "query", "success-rate", "--since", "2025-01-01", "--format", "json")
    assert report.returncode == 0, report.stderr
    rows = json.loads(report.stdout)["rows"]
    assert {row["tenant"]: row["succeeded"] for row in rows} == {"acme": 3, "globex": 3}
    csv = _brigade(settings, "query", "--sql", "SELECT count() AS n FROM jobs FINAL", "--format", "csv")
    assert csv.stdout.split() == ["n", "10"], csv.stderr
    refused = _brigade(settings, "query", "--sql", "DROP TABLE jobs")
    assert refused.returncode == 1 and "read-only" in refused.stdout
    audit = _brigade(settings, "audit", "job-5-0000000")
    assert audit.returncode == 0 and "JobSucceeded" in audit.stdout, audit.stderr
    verified = _brigade(settings, "replay", "--no-processor")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "no differences" in verified.stdout
