"""Operator commands while the API holds the chDB directory: reads through the API.

The API runs in a child process with its own chDB directory (chDB admits one directory
per process, and this one may hold the session's), exactly as ``brigade up`` runs it.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest

from brigade.endpoints import operator_token_path
from brigade.errors import ProjectionError
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.backends import chdb_path, open_clickhouse
from projections.backends.proxy import WRITES_REFUSED, ProxyClickHouse, directory_locked
from projections.migrations import MIGRATIONS
from projections.simulate import stream
from testkit.support import http_ok, poll_until, settings_env
from tests.conftest import free_port
from tests.projections.support import produce

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class RunningApi:
    """The API child process: its URL and operator token."""

    url: str
    token: str
    process: subprocess.Popen[bytes]


def _env(settings: Settings) -> dict[str, str]:
    return settings_env(settings, COLUMNS="200")


def _brigade(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "cli", *args],
        cwd=ROOT, env=_env(settings), capture_output=True, text=True, timeout=120, check=False,
    )


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.kill(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.kill(process.pid, signal.SIGKILL)
            process.wait(timeout=10)


@pytest.fixture
def running_api(settings: Settings, topics: Topology, tmp_path: Path) -> Iterator[RunningApi]:
    """``python -m cli api`` on a free port, holding the test's chDB directory."""
    settings.api.port = free_port()
    url = f"http://127.0.0.1:{settings.api.port}"
    log = (tmp_path / "api.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--port", str(settings.api.port)],
        cwd=ROOT, env=_env(settings), stdout=log, stderr=subprocess.STDOUT,
    )
    try:
        def up() -> bool:
            assert process.poll() is None, (tmp_path / "api.log").read_text()
            return http_ok(f"{url}/healthz", timeout_s=1.0)

        poll_until(up, timeout_s=90, interval_s=0.1, what="the API to start")
        token = operator_token_path(settings).read_text().strip()
        yield RunningApi(url=url, token=token, process=process)
    finally:
        _stop(process)
        log.close()


def test_reads_are_typed_as_with_a_direct_connection(running_api: RunningApi, settings: Settings) -> None:
    # The API holds the directory, so open_clickhouse reads through it without touching chDB
    assert directory_locked(chdb_path(settings.clickhouse_url))
    proxy = open_clickhouse(settings)
    assert isinstance(proxy, ProxyClickHouse)
    try:
        # Given parameters of several types bound by the engine
        at = datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
        job = uuid.uuid4()
        rows = proxy.query_dicts(
            "SELECT {t:DateTime64(6, 'UTC')} AS t, {u:UUID} AS u, {a:Array(String)} AS a, "
            "{d:Decimal(10, 2)} AS d, toDate('2026-01-02') AS day, CAST(NULL AS Nullable(String)) AS none",
            {"t": at, "u": job, "a": ["x", "y'z"], "d": Decimal("12.34")},
        )
        # Then they come back as the same Python values
        assert rows == [{"t": at, "u": job, "a": ["x", "y'z"], "d": Decimal("12.34"),
                         "day": at.date(), "none": None}]
        # And the API's migrations are visible, DateTime64 as aware datetimes
        applied = proxy.query(
            "SELECT version, name, applied_at FROM schema_migrations FINAL ORDER BY version"
        )
        assert [(v, n) for v, n, _ in applied] == [(m.version, m.name) for m in MIGRATIONS]
        assert all(abs(datetime.now(UTC) - a) < timedelta(minutes=10) for _, _, a in applied)
        assert proxy.database == "brigade"
    finally:
        proxy.close()
    with pytest.raises(ProjectionError, match="closed"):
        proxy.query("SELECT 1")


def test_writes_wrong_tokens_and_bad_sql_are_refused(running_api: RunningApi) -> None:
    proxy = ProxyClickHouse(running_api.url, running_api.token)
    with pytest.raises(ProjectionError, match="writes through the running API are not supported"):
        proxy.insert_rows("jobs", [("j",)], ["job_id"])
    with pytest.raises(ProjectionError) as refused:
        proxy.insert_columns("jobs", {"job_id": ["j"]})
    assert str(refused.value) == WRITES_REFUSED
    with pytest.raises(ProjectionError, match=r"\(400\).*no_such_table"):
        proxy.query("SELECT * FROM no_such_table")
    # The operator connection is read-only on the server side: DDL is refused too
    with pytest.raises(ProjectionError, match=r"\(400\).*readonly"):
        proxy.execute("CREATE TABLE IF NOT EXISTS proxy_probe (x UInt8) ENGINE = Memory")
    assert proxy.query("EXISTS TABLE proxy_probe") == [(0,)]
    proxy.close()
    elsewhere = ProxyClickHouse(running_api.url, running_api.token, database="other")
    with pytest.raises(ProjectionError, match="uses database 'brigade'"):
        elsewhere.query("SELECT 1")
    elsewhere.close()
    wrong = ProxyClickHouse(running_api.url, "not-the-token")
    with pytest.raises(ProjectionError, match=r"\(401\)"):
        wrong.query("SELECT 1")
    wrong.close()
    for headers in ({}, {"Authorization": "Bearer not-the-token"}):
        response = httpx.post(f"{running_api.url}/v1/admin/clickhouse", json={"sql": "SELECT 1"},
                              headers=headers, timeout=10)
        assert response.status_code == 401
        assert response.json()["error"]["code"] == "unauthorized"


def test_query_audit_and_replay_run_while_the_api_holds_chdb(
    running_api: RunningApi, settings: Settings, topics: Topology
) -> None:
    # Given a few jobs' lifecycle events, projected by the API's embedded projector
    events = stream(4, seed=7)
    produce(settings, topics.job_events, events)
    proxy = ProxyClickHouse(running_api.url, running_api.token)
    poll_until(lambda: proxy.query("SELECT count() FROM job_events FINAL") == [(len(events),)],
               timeout_s=60, interval_s=0.1, what="the events to be projected")
    proxy.close()
    # When the operator commands run in their own processes, they read through the API
    report = _brigade(settings, "query", "throughput", "--since", "2025-01-01", "--format", "json")
    assert report.returncode == 0, report.stdout + report.stderr
    assert json.loads(report.stdout)["rows"]
    counted = _brigade(settings, "query", "--sql", "SELECT count() AS n FROM jobs FINAL", "--format", "csv")
    assert counted.stdout.split() == ["n", "4"], counted.stdout + counted.stderr
    audit = _brigade(settings, "audit", "job-7-0000000")
    assert audit.returncode == 0 and "JobSucceeded" in audit.stdout, audit.stdout + audit.stderr
    verified = _brigade(settings, "replay", "--no-processor")
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert "no differences" in verified.stdout
    # But a rebuild, which must write, is refused with the way out
    rebuild = _brigade(settings, "replay", "--into", "scratch")
    assert rebuild.returncode == 1
    assert "writes through the running API are not supported" in " ".join(rebuild.stdout.split())
    assert running_api.process.poll() is None
    # Once the API stops, the commands open the directory themselves
    _stop(running_api.process)
    assert not directory_locked(chdb_path(settings.clickhouse_url))
    direct = _brigade(settings, "query", "--sql", "SELECT count() AS n FROM jobs FINAL", "--format", "csv")
    assert direct.stdout.split() == ["n", "4"], direct.stdout + direct.stderr
