"""The projector killed with SIGKILL between insert and commit still counts every event once."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from brigade.kafka.clients import make_consumer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.fold import fold_events
from projections.logread import log_end_offsets
from projections.simulate import by_job, stream
from tests.projections.support import produce

ROOT = Path(__file__).resolve().parents[2]


def _child(mode: str, count: int, settings: Settings, path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "tests.projections.projector_child", mode, str(count),
         settings.model_dump_json(), str(path)],
        cwd=ROOT, capture_output=True, text=True, timeout=240, check=False,
    )


def _committed(settings: Settings, topic: str, partitions: list[int]) -> dict[int, int]:
    consumer = make_consumer(settings, Topology(settings).projector_group)
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=10)
        return {tp.partition: max(tp.offset, 0) for tp in found}
    finally:
        consumer.close()


@pytest.mark.chaos
def test_sigkill_between_insert_and_commit_never_double_counts(
    settings: Settings, topics: Topology, tmp_path: Path
) -> None:
    # Given 60 jobs' events on the log
    events = stream(60, seed=11)
    produce(settings, topics.job_events, events)
    ends = log_end_offsets(settings, topics.job_events)
    path = tmp_path / "projector-chdb"
    # When a projector dies by SIGKILL right after inserting its second batch, before committing it
    died = _child("die-after-insert", 2, settings, path)
    assert died.returncode == -signal.SIGKILL, died.stderr[-2000:]
    committed = _committed(settings, topics.job_events, list(ends))
    assert sum(committed.values()) < sum(ends.values())  # the kill left inserted rows uncommitted
    # And a new projector resumes on the same data
    resumed = _child("catch-up", 0, settings, path)
    assert resumed.returncode == 0, resumed.stderr[-2000:]
    result = json.loads(resumed.stdout.strip().splitlines()[-1])
    # Then every event is in job_events and the rollups exactly once
    assert result["caught_up"] is True
    assert result["rows"] == result["distinct"] == len(events)
    assert result["rollup_events"] == len(events)
    assert result["rollup_submitted"] == 60
    expected = {job: fold_events(evs) for job, evs in by_job(events).items()}
    assert result["statuses"] == {job: t.status for job, t in expected.items() if t is not None}
    assert result["rollup_succeeded"] == sum(t.status == "succeeded" for t in expected.values() if t)
    assert result["duplicates"] == 0  # nothing inserted was delivered again
