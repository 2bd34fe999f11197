"""The read model, reports and audit timeline on known event streams (both backends)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from brigade.errors import ProjectionError
from projections import reports
from projections.audit import timeline
from projections.migrations import apply_migrations
from projections.queries import ClickHouseReadModel
from projections.simulate import stream
from projections.types import ClickHouse
from projections.writer import LogRecord, ProjectionWriter
from schemas.codec import Codec

START = datetime(2026, 1, 1, tzinfo=UTC)
WINDOW = {"since": START - timedelta(hours=1), "until": START + timedelta(hours=1)}


@pytest.fixture
def model(clickhouse: ClickHouse) -> ClickHouseReadModel:
    """20 jobs (tenants acme/globex alternating; paths cycling through all five) projected."""
    apply_migrations(clickhouse)
    codec = Codec()
    events = stream(20, start=START)
    ProjectionWriter(clickhouse).write([LogRecord(0, i, codec.encode(e)) for i, e in enumerate(events)])
    return ClickHouseReadModel(clickhouse)


def test_status_lookup_is_tenant_scoped(model: ClickHouseReadModel) -> None:
    job = model.job("acme", "job-0-0000000")
    assert job is not None
    assert (job.status, job.attempts, job.pool, job.sequence) == ("succeeded", 1, "default", 4)
    assert job.result_inline == '{"embedding":[0.1]}'
    assert model.job("globex", "job-0-0000000") is None
    assert model.job("acme", "nope") is None
    dead = model.job("globex", "job-0-0000003")
    assert dead is not None and dead.status == "failed"
    assert dead.error == "max_attempts_exhausted: bad input"
    cancelled = model.job("acme", "job-0-0000004")
    assert cancelled is not None and cancelled.status == "cancelled" and cancelled.cancel_requested


def test_a_lookup_sees_the_highest_sequence_before_merges(
    clickhouse: ClickHouse, model: ClickHouseReadModel
) -> None:
    # Given a job's latest state (sequence 4, succeeded), merges stopped so that every
    # version inserted below stays in a part of its own
    clickhouse.execute("SYSTEM STOP MERGES jobs")
    (stored,) = clickhouse.query_dicts("SELECT * FROM jobs WHERE job_id = 'job-0-0000000'")
    # When an older state (sequence 2, running) arrives later, as a redelivery would bring it
    older = {**stored, "sequence": 2, "status": "running"}
    clickhouse.insert_rows("jobs", [tuple(older.values())], list(stored))
    # Then the lookup still answers with the newest state, though both versions are stored
    job = model.job("acme", "job-0-0000000")
    assert job is not None and (job.sequence, job.status) == (4, "succeeded")
    assert clickhouse.query("SELECT count() FROM jobs WHERE job_id = 'job-0-0000000'")[0][0] == 2
    # And a state with the same sequence inserted later wins the tie, as FINAL (and a merge) has it
    clickhouse.insert_rows("jobs", [tuple({**stored, "status": "failed"}.values())], list(stored))
    job = model.job("acme", "job-0-0000000")
    assert job is not None and (job.sequence, job.status) == (4, "failed")
    assert clickhouse.query("SELECT status FROM jobs FINAL WHERE job_id = 'job-0-0000000'") == [("failed",)]


def test_events_in_order_with_detail(model: ClickHouseReadModel) -> None:
    events = model.events("acme", "job-0-0000002")
    assert [e.event_type for e in events] == [
        "JobSubmitted", "JobQueued", "JobStarted", "JobRetryScheduled", "JobQueued", "JobStarted",
        "JobSucceeded",
    ]
    assert events[3].detail["retry_after_ms"] == 1000
    assert [e.sequence for e in events] == list(range(1, len(events) + 1))
    assert events[1].detail["pool"] == "default"
    assert "input" not in events[0].detail["spec"]
    assert model.events("globex", "job-0-0000002") == []


def test_list_jobs_filters_and_pages(model: ClickHouseReadModel) -> None:
    seen: list[str] = []
    cursor = None
    while True:
        page = model.list_jobs("acme", limit=3, cursor=cursor)
        seen += [j.job_id for j in page.jobs]
        if page.next_cursor is None:
            break
        cursor = page.next_cursor
    assert seen == [f"job-0-{i:07d}" for i in range(18, -1, -2)]
    succeeded = model.list_jobs("acme", status="succeeded", limit=100)
    assert {j.status for j in succeeded.jobs} == {"succeeded"} and len(succeeded.jobs) == 6
    recent = model.list_jobs("globex", since=START + timedelta(milliseconds=150), limit=100)
    assert [j.job_id for j in recent.jobs] == ["job-0-0000019", "job-0-0000017", "job-0-0000015"]
    assert model.list_jobs("acme", pool="other").jobs == []
    with pytest.raises(ProjectionError):
        model.list_jobs("acme", cursor="not-a-cursor")


def test_tenant_stats(model: ClickHouseReadModel) -> None:
    stats = model.tenant_stats("acme", since=START - timedelta(minutes=5))
    # acme has jobs 0,2,...,18: paths cycle succeeded, retried, rate_limited, dead_lettered, cancelled
    assert (stats.submitted, stats.succeeded, stats.failed, stats.dead_lettered, stats.cancelled) == (
        10, 6, 2, 2, 2)
    assert stats.retries == 6
    assert stats.p50_latency_ms is not None and stats.p99_latency_ms is not None
    assert 0 < stats.p50_latency_ms <= stats.p99_latency_ms
    empty = model.tenant_stats("nobody", since=START)
    assert (empty.submitted, empty.p50_latency_ms) == (0, None)


def test_reports_on_a_known_stream(clickhouse: ClickHouse, model: ClickHouseReadModel) -> None:
    rates = {row["tenant"]: row for row in reports.success_rate(clickhouse, **WINDOW).as_dicts()}
    assert rates["acme"]["success_rate"] == pytest.approx(0.75)
    assert rates["acme"]["dead_lettered"] == 2
    retries = reports.retry_rates(clickhouse, **WINDOW, tenant_id="globex").as_dicts()
    assert [(r["tenant"], r["attempts"], r["retries"], r["rate_limited"]) for r in retries] == [
        ("globex", 16, 6, 2)]
    failures = {f["reason"]: f for f in reports.failure_reasons(clickhouse, **WINDOW).as_dicts()}
    assert {reason: f["failures"] for reason, f in failures.items()} == {
        "timeout": 8, "HTTP 429: rate limited": 4, "max_attempts_exhausted: bad input": 4}
    assert failures["max_attempts_exhausted: bad input"]["terminal"] == 4
    latency = reports.latencies(clickhouse, **WINDOW, tenant_id="acme").as_dicts()
    assert len(latency) == 1 and len(latency[0]["end_to_end_ms"]) == 3
    dlq = reports.dlq_growth(clickhouse, **WINDOW).as_dicts()
    assert sum(row["dead_lettered"] for row in dlq) == 4 and dlq[-1]["cumulative"] == 4
    queue = reports.queue_time(clickhouse, **WINDOW).as_dicts()
    assert sum(row["started"] for row in queue) == 32
    throughput = reports.throughput(clickhouse, **WINDOW).as_dicts()
    assert sum(row["submitted"] for row in throughput) == 20
    assert "tenant,pool" in reports.throughput(clickhouse, **WINDOW).to_csv()
    later = {"since": START + timedelta(hours=2), "until": START + timedelta(hours=3)}
    outside = reports.success_rate(clickhouse, **later)
    assert outside.rows == []


def test_raw_sql_is_read_only(clickhouse: ClickHouse, model: ClickHouseReadModel) -> None:
    assert reports.raw_query(clickhouse, "SELECT count() AS n FROM jobs").rows == [(20,)]
    for sql in ("DROP TABLE jobs", "SELECT 1; DROP TABLE jobs", "INSERT INTO jobs (job_id) VALUES ('x')",
                "WITH 1 AS x INSERT INTO jobs (job_id) SELECT 'x'"):
        with pytest.raises(ProjectionError):
            reports.raw_query(clickhouse, sql)
    assert reports.raw_query(clickhouse, "SELECT count() AS n FROM jobs").rows == [(20,)]


def test_audit_timeline(clickhouse: ClickHouse, model: ClickHouseReadModel) -> None:
    steps = timeline(clickhouse, "job-0-0000000")
    assert [s.event_type for s in steps] == ["JobSubmitted", "JobQueued", "JobStarted", "JobSucceeded"]
    assert steps[0].since_previous_ms == 0
    assert steps[-1].since_start_ms == pytest.approx(sum(s.since_previous_ms for s in steps))
    assert "pool=default" in steps[1].summary()
    assert timeline(clickhouse, "job-0-0000000", tenant_id="globex") == []
