"""The projector against a real broker and chDB: batches, redelivery, restart."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.fold import fold_events
from projections.logread import log_end_offsets
from projections.projector import Projector
from projections.simulate import by_job, circuit_opened, stream
from projections.types import ClickHouse
from schemas.records import JobSubmitted
from tests.projections.support import chdb, produce

__all__ = ["chdb"]


def _project(settings: Settings, ch: ClickHouse, topic: str) -> Projector:
    projector = Projector(settings=settings, clickhouse=ch, batch_ms=50)
    projector.start()
    assert projector.wait_for_offsets(log_end_offsets(settings, topic), timeout_s=60), projector.error
    return projector


def _statuses(ch: ClickHouse) -> dict[str, str]:
    return dict(ch.query("SELECT job_id, status FROM jobs FINAL"))


def _rollup_totals(ch: ClickHouse) -> tuple[int, ...]:
    row = ch.query(
        "SELECT sum(events), sum(submitted), sum(succeeded), sum(failed), sum(dead_lettered), "
        "sum(cancelled), sum(retries), sum(rate_limited) FROM job_metrics_1m"
    )[0]
    return tuple(int(v) for v in row)


def test_projects_every_event_once_and_skips_junk(
    settings: Settings, topics: Topology, chdb: ClickHouse
) -> None:
    # Given a log with 40 jobs, a circuit event and undecodable bytes
    events = stream(40)
    circuit = circuit_opened("default", "m", datetime.now(UTC))
    produce(settings, topics.job_events, [*events, circuit, b"junk"])
    # When the projector catches up
    projector = _project(settings, chdb, topics.job_events)
    try:
        # Then every job's row is its fold, and junk is counted, not fatal
        expected = {job: fold_events(evs) for job, evs in by_job(events).items()}
        assert _statuses(chdb) == {job: t.status for job, t in expected.items() if t is not None}
        assert chdb.query("SELECT count() FROM job_events")[0][0] == len(events)
        assert chdb.query("SELECT count() FROM circuit_events")[0][0] == 1
        assert projector.stats.undecodable == 1
        totals = _rollup_totals(chdb)
        assert totals[:2] == (len(events), 40)
        # When the same events are delivered again (new offsets, same event ids)
        produce(settings, topics.job_events, events)
        assert projector.wait_for_offsets(log_end_offsets(settings, topics.job_events), timeout_s=60)
        # Then nothing is counted twice
        assert projector.stats.duplicates == len(events)
        assert chdb.query("SELECT count() FROM job_events")[0][0] == len(events)
        assert _rollup_totals(chdb) == totals
    finally:
        projector.stop()
    assert projector.error is None


def test_restart_resumes_from_clickhouse_and_refolds(
    settings: Settings, topics: Topology, chdb: ClickHouse
) -> None:
    # Given half of every job's history projected by one projector, which then stops
    events = stream(30, seed=3)
    half = len(events) // 2
    produce(settings, topics.job_events, events[:half])
    _project(settings, chdb, topics.job_events).stop()
    # When a new projector (empty cache) projects the rest
    produce(settings, topics.job_events, events[half:])
    projector = _project(settings, chdb, topics.job_events)
    projector.stop()
    # Then jobs first seen mid-history were re-folded from job_events, and all rows match
    assert projector.stats.refolded_jobs > 0
    assert projector.stats.duplicates == 0
    expected = {job: fold_events(evs) for job, evs in by_job(events).items()}
    assert _statuses(chdb) == {job: t.status for job, t in expected.items() if t is not None}
    counts = Counter(row[0] for row in chdb.query("SELECT event_id FROM job_events"))
    assert len(counts) == len(events) and max(counts.values()) == 1


def test_wait_for_sees_a_transition(settings: Settings, topics: Topology, chdb: ClickHouse) -> None:
    events = stream(1, paths=("succeeded",))
    projector = Projector(settings=settings, clickhouse=chdb, batch_ms=20)
    projector.start()
    try:
        produce(settings, topics.job_events, events)
        last = events[-1].envelope
        assert projector.wait_for(last.job_id, last.sequence, timeout_s=30)
        assert _statuses(chdb) == {last.job_id: "succeeded"}
    finally:
        projector.stop()


def test_a_reemission_after_a_projector_restart_is_counted_once(
    settings: Settings, topics: Topology, chdb: ClickHouse
) -> None:
    # Given 10 jobs' whole histories projected by a projector that then stops
    events = stream(10, seed=7)
    produce(settings, topics.job_events, events)
    _project(settings, chdb, topics.job_events).stop()
    totals = _rollup_totals(chdb)
    assert totals[:2] == (len(events), 10)
    # When the processor re-emits the JobSubmitted of each (same ids and sequences, new
    # offsets), as when it replays a batch of submits after a crash, and a fresh projector
    # (empty cache) reads them: each job's only event in that batch is its JobSubmitted
    again = [e for e in events if isinstance(e, JobSubmitted)]
    produce(settings, topics.job_events, again)
    projector = _project(settings, chdb, topics.job_events)
    projector.stop()
    # Then the rollups and job_events count every job and event once
    assert projector.stats.duplicates == len(again)
    assert _rollup_totals(chdb) == totals
    assert chdb.query("SELECT count() FROM job_events")[0][0] == len(events)
