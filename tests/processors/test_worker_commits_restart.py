"""The processors' reader of the workers' commits through a real broker stopped and started again."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest
from confluent_kafka import Consumer, KafkaException, TopicPartition

from brigade.errors import KafkaError
from brigade.kafka import topology
from brigade.kafka.clients import consumer_config, make_admin
from brigade.kafka.lag import Offsets
from brigade.kafka.local import LocalKafka
from brigade.settings import KafkaSettings, Settings
from processors.jobs import _worker_offsets_reader
from tests.conftest import free_port


def commit(settings: Settings, group: str, topic: str, offset: int, *, deadline_s: float = 60) -> None:
    """Commit as a worker of ``group`` would, retrying while the restarted coordinator loads."""
    consumer = Consumer(consumer_config(settings, group))
    end = time.monotonic() + deadline_s
    try:
        while True:
            try:
                consumer.commit(offsets=[TopicPartition(topic, 0, offset)], asynchronous=False)
                return
            except KafkaException:
                # A restarted broker answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS
                # for a while (librdkafka marks only some of them retriable).
                if time.monotonic() > end:
                    raise
                time.sleep(0.5)
    finally:
        consumer.close()


def read_until(read: Callable[[], list[Offsets]], wanted: Offsets, *, deadline_s: float) -> list[str]:
    """Read until one group's offsets include ``wanted``; the errors seen on the way."""
    errors: list[str] = []
    end = time.monotonic() + deadline_s
    while time.monotonic() < end:
        try:
            if any(wanted.items() <= offsets.items() for offsets in read()):
                return errors
        except KafkaError as exc:
            errors.append(str(exc))
        time.sleep(0.5)  # a poll interval, not a synchronisation: the loop checks the answer
    raise AssertionError(f"no reading with {wanted} within {deadline_s}s; errors: {errors[-3:]}")


@pytest.mark.slow
def test_reads_of_the_workers_commits_recover_after_a_broker_restart(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    settings = Settings(kafka=KafkaSettings(bootstrap=broker.bootstrap, topic_prefix="commits"))
    plan = topology.Topology(settings)
    work, group = plan.work("default", "batch"), plan.worker_group(["default"])
    broker.start()
    try:
        topology.apply(make_admin(settings), plan.specs())
        commit(settings, group, work, 3)
        # Given the processors' reader, which has read the workers' commits once
        read = _worker_offsets_reader(settings)
        read_until(read, {(work, 0): 3}, deadline_s=60)
        # When the broker stops, reads fail (they never answer from a dead connection)
        broker.stop()
        with pytest.raises(KafkaError):
            read()
        # Then after it starts again the same reader sees commits made after the restart
        broker.start()
        commit(settings, group, work, 7)
        read_until(read, {(work, 0): 7}, deadline_s=90)
    finally:
        broker.stop()
