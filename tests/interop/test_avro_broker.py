"""Messages of every Brigade topic, read from the real broker, decoded by Apache Avro Java; and
a cancel written by Java's ``BinaryMessageEncoder`` cancels a job through the real processor."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from brigade.kafka.clients import make_consumer
from brigade.settings import LANES
from schemas.codec import Codec
from testkit.jobs import outcome, spec
from testkit.support import poll_until
from tests.interop.java_tools import AvroJava
from tests.interop.test_avro_java import cancel_json
from tests.processors.conftest import Stack, processor_settings

pytestmark = pytest.mark.slow
STARTUP_S = 90.0  # the processor joins its group and recovers its table first
codec = Codec()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One real job processor process on its own topics."""
    tmp = tmp_path_factory.mktemp("interop-processor")
    s = Stack(processor_settings(kafka_bootstrap, tmp), tmp)
    s.processors.start("p1")
    try:
        yield s
    finally:
        s.close()


def _fresh() -> Any:
    return spec(f"interop-{uuid.uuid4().hex}", created_at=datetime.now(UTC))


def _read_raw(stack: Stack, topic: str) -> list[bytes]:
    """Every message value of ``topic`` up to its current end."""
    consumer = make_consumer(stack.settings, f"interop-{uuid.uuid4().hex[:8]}")
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
                for p in partitions}
        pending = {p: end for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        values: list[bytes] = []
        deadline = time.monotonic() + 60
        while pending:
            assert time.monotonic() < deadline, f"{topic} not read to its end"
            message = consumer.poll(0.2)
            if message is None or message.error() is not None:
                continue
            values.append(message.value() or b"")
            if (message.offset() or 0) + 1 >= pending.get(message.partition() or 0, 0):
                pending.pop(message.partition(), None)
        return values
    finally:
        consumer.close()


def test_java_decodes_a_message_of_every_topic_from_the_broker(stack: Stack, avro_java: AvroJava) -> None:
    # Given a job run through the processor (a scripted worker reports its outcomes) and a poison command
    s = _fresh()
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    stack.client.outcome(outcome(s, "started", lease_ms=30_000, at=datetime.now(UTC)))
    stack.observer.wait_event(s.job_id, "JobStarted")
    stack.client.outcome(outcome(s, "succeeded", result_inline='{"ok":true}', latency_ms=3.0,
                                 model="all-MiniLM-L6-v2", batch_size=1, at=datetime.now(UTC)))
    stack.observer.wait_event(s.job_id, "JobSucceeded")
    poison = b"\x00not avro " + uuid.uuid4().bytes
    stack.client.send(stack.client.topology.commands, s.job_id.encode(), poison)
    poll_until(lambda: [d for d in stack.observer.dead if d.raw == poison], what="the poison dead-lettered")
    # When every message of every topic is read back from the broker and handed to Java
    topology = stack.client.topology
    work = [topology.work(pool, lane) for pool in stack.settings.pools for lane in LANES]
    topics = {"commands": [topology.commands], "outcomes": [topology.outcomes],
              "job-events": [topology.job_events], "dlq": [topology.dlq], "work": work}
    batch: list[dict[str, str]] = []
    for kind, names in topics.items():
        for index, value in enumerate(v for name in names for v in _read_raw(stack, name) if v != poison):
            name = codec.full_name(type(codec.decode(value)))
            batch.append({"id": f"{kind}/{index}", "schema": name, "hex": value.hex()})
    answer = avro_java.run(decode=batch)
    # Then Java decodes each one into the schema we wrote, and re-encodes it byte for byte
    for request, item in zip(batch, answer["decoded"], strict=True):
        assert "error" not in item, (request["id"], item)
        assert item["schema"] == request["schema"] and item["reencoded"] == request["hex"], request["id"]
    seen = {item["id"].split("/")[0] for item in answer["decoded"]}
    assert seen == set(topics)
    for kind in topics:  # shown with -s: what Java read from each topic
        first = next(item for item in answer["decoded"] if item["id"].startswith(f"{kind}/"))
        print(f"\n[{kind}] {first['schema']}: {first['datum'][:400]}")


def test_a_cancel_encoded_by_java_cancels_the_job(stack: Stack, avro_java: AvroJava) -> None:
    # Given a queued job
    s = _fresh()
    stack.client.submit(s)
    stack.observer.wait_event(s.job_id, "JobQueued", timeout=STARTUP_S)
    # When Java's BinaryMessageEncoder writes a CancelJob for it, produced to the commands topic
    datum = cancel_json(s.job_id, s.tenant_id)
    request = {"id": "cancel", "schema": "brigade.commands.CancelJob", "json": datum}
    [item] = avro_java.run(encode_json=[request])["encoded"]
    javas = bytes.fromhex(item["hex"])
    stack.client.send(stack.client.topology.commands, s.job_id.encode(), javas)
    # Then the processor cancels the job, and nothing is dead-lettered
    stack.observer.wait_event(s.job_id, "JobCancelled")
    assert stack.observer.names(s.job_id) == ["JobSubmitted", "JobQueued", "JobCancelled"]
    assert not [d for d in stack.observer.dead if d.raw == javas]
