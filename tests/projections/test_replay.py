"""Audit replay: verify catches a corrupted projection; rebuild equals the live tables."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from processors.lifecycle import fold
from projections.backends import connect
from projections.logread import log_end_offsets
from projections.migrations import apply_migrations
from projections.projector import Projector
from projections.replay import _shares, rebuild, replay_log, verify
from projections.simulate import by_job, circuit_opened, stream
from projections.types import ClickHouse
from projections.writer import stored_offsets
from tests.projections.support import chdb, produce

__all__ = ["chdb"]


@pytest.fixture
def live(settings: Settings, topics: Topology, chdb: ClickHouse) -> ClickHouse:
    """A log of 25 jobs (plus a circuit event and junk), projected by the projector."""
    events = stream(25, seed=7)
    circuit = circuit_opened("default", "m", datetime.now(UTC))
    produce(settings, topics.job_events, [*events, circuit, b"\x00"])
    projector = Projector(settings=settings, clickhouse=chdb, batch_ms=20)
    projector.start()
    try:
        assert projector.wait_for_offsets(log_end_offsets(settings, topics.job_events), timeout_s=60)
    finally:
        projector.stop()
    return chdb


@pytest.fixture
def fresh(chdb_dir: Path) -> Iterator[ClickHouse]:
    """An empty database on the same chDB, for rebuilds."""
    database = f"r_{uuid.uuid4().hex[:12]}"
    ch = connect(f"chdb://{chdb_dir}", database=database)
    yield ch
    ch.execute(f"DROP DATABASE IF EXISTS {database}")
    ch.close()


def test_verify_agrees_with_a_live_projection(settings: Settings, live: ClickHouse) -> None:
    report = verify(settings, live)
    assert report.ok, report.differences
    assert report.compared_jobs == 25
    assert (report.replayed.undecodable, report.replayed.illegal, report.replayed.duplicates) == (1, 0, 0)


def test_replay_split_over_two_processes_equals_one(settings: Settings, live: ClickHouse) -> None:
    topic = Topology(settings).job_events
    one = replay_log(settings, topic, processes=1)
    two = replay_log(settings, topic, processes=2)
    assert len(one.jobs) == 25
    assert two.jobs == one.jobs
    counts = ("messages", "events", "duplicates", "illegal", "undecodable", "partial")
    assert [getattr(two, c) for c in counts] == [getattr(one, c) for c in counts]
    assert verify(settings, live, processes=2).ok


def test_partitions_are_shared_by_message_count() -> None:
    bounds = {0: (0, 100), 1: (0, 10), 2: (50, 100), 3: (0, 60), 4: (7, 7)}
    shares = _shares(bounds, 2)
    assert sorted(p for share in shares for p in share) == [0, 1, 2, 3, 4]
    sizes = sorted(sum(bounds[p][1] - bounds[p][0] for p in share) for share in shares)
    assert sizes == [110, 110]


def test_verify_lists_a_corrupted_row(settings: Settings, live: ClickHouse) -> None:
    # Given a jobs row overwritten with a wrong status at the same sequence (a later insert wins)
    job_id = live.query("SELECT job_id FROM jobs FINAL WHERE status = 'succeeded' LIMIT 1")[0][0]
    live.execute(
        "INSERT INTO jobs (job_id, tenant_id, status, sequence, attempts, created_at, updated_at) "
        "SELECT job_id, tenant_id, 'failed', sequence, attempts, created_at, updated_at FROM jobs FINAL "
        "WHERE job_id = {job:String}",
        {"job": job_id},
    )
    # When the log is replayed
    report = verify(settings, live)
    # Then the difference names the job, the field and both values
    statuses = [d for d in report.differences if d.field == "status"]
    assert [(d.job_id, d.replayed, d.stored) for d in statuses] == [(job_id, "succeeded", "failed")]
    assert not report.ok


def test_verify_compares_the_processor_table(settings: Settings, live: ClickHouse) -> None:
    events = by_job(stream(25, seed=7))
    states = {job_id: fold(evs) for job_id, evs in events.items()}
    assert verify(settings, live, processor_states=states).ok  # type: ignore[arg-type]
    first = next(iter(states))
    del states[first]
    report = verify(settings, live, processor_states=states)  # type: ignore[arg-type]
    assert [(d.job_id, d.source, d.field) for d in report.differences] == [(first, "processor", "row")]


def test_rebuild_into_a_fresh_database_equals_the_live_one(
    settings: Settings, live: ClickHouse, fresh: ClickHouse
) -> None:
    stats, _ = rebuild(settings, fresh)
    assert stats.events == live.query("SELECT count() FROM job_events")[0][0]
    for table, key in (("jobs", "job_id"), ("job_events", "event_id"), ("circuit_events", "event_id")):
        columns = _columns(live, table)
        sql = f"SELECT {columns} FROM {table} FINAL ORDER BY {key}"
        assert fresh.query(sql) == live.query(sql), table
    rollup = ("SELECT tenant_id, pool, model, minute, sum(events), sum(succeeded), sum(retries), "
              "arrayMap(x -> ifNotFinite(x, -1), quantilesMerge(0.5, 0.99)(total_ms_q)) FROM job_metrics_1m "
              "GROUP BY tenant_id, pool, model, minute ORDER BY ALL")
    assert fresh.query(rollup) == live.query(rollup)
    assert stored_offsets(fresh) == stored_offsets(live)
    # And a verify against the rebuilt database passes
    assert verify(settings, fresh).ok


def _columns(ch: ClickHouse, table: str) -> str:
    names = [row[0] for row in ch.query(f"SELECT name FROM system.columns WHERE database = currentDatabase() "
                                        f"AND table = '{table}' AND name != 'inserted_at' ORDER BY position")]
    return ", ".join(names)


def test_rebuild_with_a_fresh_migration(fresh: ClickHouse) -> None:
    assert apply_migrations(fresh) == [1]
    assert apply_migrations(fresh) == []


def test_automatic_process_count_is_one_for_small_logs_and_never_exceeds_filled_partitions() -> None:
    from projections.replay import PARALLEL_MIN_MESSAGES, _process_count

    small = {0: (0, 10), 1: (0, 10)}
    assert _process_count(None, small) == 1
    big = {0: (0, PARALLEL_MIN_MESSAGES), 1: (0, 0)}
    assert _process_count(None, big) == 1  # one partition holds everything
    assert _process_count(4, {0: (0, 5), 1: (0, 5), 2: (3, 3)}) == 2
