"""Out-of-order batches never let the worker commit past a message still in the model."""

from __future__ import annotations

from pathlib import Path

import pytest
from confluent_kafka import TopicPartition

from brigade.kafka import topology
from brigade.kafka.clients import make_admin, make_consumer
from brigade.kafka.topology import Topology
from brigade.settings import LaneSettings, PoolSettings, Settings, TopicSettings
from workers.app import app_id

from .gated_model import HoldingModel
from .kafka_harness import StandInProcessor, WorkerProcess, make_spec

MODEL = "emulated-minilm"


def committed(settings: Settings, group: str, topic: str) -> int:
    """The group's committed offset of partition 0 of ``topic`` (-1001 when none)."""
    consumer = make_consumer(settings, group)
    try:
        [tp] = consumer.committed([TopicPartition(topic, 0)], timeout=10)
        return int(tp.offset)
    finally:
        consumer.close()


def end_offset(settings: Settings, topic: str) -> int:
    consumer = make_consumer(settings, "watermarks")
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


@pytest.mark.chaos
@pytest.mark.slow
def test_no_commit_past_an_unfinished_item_and_sigkill_loses_nothing(
    settings: Settings, holding: tuple[HoldingModel, str], tmp_path: Path
) -> None:
    model, url = holding
    pool = PoolSettings(model=MODEL, endpoint=url, max_concurrency=3, timeout_s=600,
                        batch=LaneSettings(max_batch_size=1, max_delay_ms=1, token_budget=10_000))
    cfg = settings.model_copy(update={
        "pools": {"p": pool}, "default_pool": "p",
        "topics": TopicSettings(partitions=1, work_partitions=1, retry_partitions=1),
    })
    topo = Topology(cfg)
    assert not topology.apply(make_admin(cfg), topo.specs()).drift
    processor = StandInProcessor(cfg)
    first = WorkerProcess(cfg, ["p"], tmp_path / "worker-1.log")
    processor.workers.append(first)
    second: WorkerProcess | None = None
    group = app_id(cfg, ["p"])
    try:
        # Given a first work item (offset 0 of a fresh group) held inside the model
        slow = make_spec("slow 0")
        processor.dispatcher.submit(slow, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: model.held > 0, timeout=120, what="the slow item in the model")
        # When the items after it on the same partition finish
        fast = [make_spec(f"fast {i}") for i in range(4)]
        for spec in fast:
            processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: all(s.job_id in processor.finished for s in fast), timeout=120,
                           what="the fast jobs")
        # and the worker has committed every job event it read since (so a commit ran after
        # the fast items were acked)
        events_end = end_offset(cfg, topo.job_events)
        processor.wait_for(lambda: committed(cfg, group, topo.job_events) >= events_end, timeout=120,
                           what="the worker's commit of job events")
        # Then the work partition is not committed past the held item
        assert committed(cfg, group, topo.work("p", "batch")) <= 0
        # And after a SIGKILL a replacement worker finishes the held job
        first.kill()
        model.release()
        second = WorkerProcess(cfg, ["p"], tmp_path / "worker-2.log")
        processor.workers.append(second)
        processor.wait_for(lambda: slow.job_id in processor.finished, timeout=150, what="the slow job")
        assert processor.finished[slow.job_id] == "succeeded"
    finally:
        model.release()
        first.kill()
        if second is not None:
            second.kill()
        processor.close()
