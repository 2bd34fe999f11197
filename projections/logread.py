"""Reading ``brigade.job-events`` from a point in time to its current end.

Replay and rebuild read the log without a consumer group's commits: they assign every
partition explicitly, start at the beginning (or at the first offset at or after a
timestamp) and stop at the end offsets seen when they began, so the run is finite even
while the processor keeps appending.
"""

from __future__ import annotations

import uuid
from collections.abc import Collection, Iterator, Mapping
from datetime import datetime

from confluent_kafka import Consumer, Message, TopicPartition

from brigade.errors import KafkaError
from brigade.kafka.clients import make_consumer
from brigade.settings import Settings
from projections.writer import LogRecord


def end_offsets(consumer: Consumer, topic: str) -> dict[int, int]:
    """``{partition: next offset to be written}`` of ``topic`` now."""
    metadata = consumer.list_topics(topic, timeout=10).topics.get(topic)
    if metadata is None or metadata.error is not None:
        raise KafkaError(f"topic {topic} is not available: {metadata.error if metadata else 'missing'}")
    return {
        partition: consumer.get_watermark_offsets(TopicPartition(topic, partition), timeout=10)[1]
        for partition in metadata.partitions
    }


def log_end_offsets(settings: Settings, topic: str) -> dict[int, int]:
    """``end_offsets`` through a short-lived consumer."""
    consumer = make_consumer(settings, f"{settings.kafka.topic_prefix}-offsets-{uuid.uuid4().hex[:8]}")
    try:
        return end_offsets(consumer, topic)
    finally:
        consumer.close()


def log_bounds(settings: Settings, topic: str) -> dict[int, tuple[int, int]]:
    """``{partition: (first offset, next offset to be written)}`` of ``topic`` now."""
    consumer = make_consumer(settings, f"{settings.kafka.topic_prefix}-offsets-{uuid.uuid4().hex[:8]}")
    try:
        ends = end_offsets(consumer, topic)
        return {p: (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0], end)
                for p, end in ends.items()}
    finally:
        consumer.close()


def read_log(
    settings: Settings, topic: str, *, since: datetime | None = None, batch_size: int = 10_000,
    partitions: Collection[int] | None = None, starts: Mapping[int, int] | None = None,
) -> Iterator[list[LogRecord]]:
    """Batches of the topic's messages from ``since`` (or the start) to its end now.

    Messages of one partition come in offset order; partitions interleave. With
    ``partitions``, only those are read (parallel replay splits them between processes).
    ``starts`` gives a partition's first offset to read instead (never before the log's
    first offset); the job processor reads a partition's unfolded tail that way.
    """
    group = f"{settings.kafka.topic_prefix}-replay-{uuid.uuid4().hex[:8]}"
    consumer = make_consumer(settings, group, **{"fetch.max.bytes": 64 * 1024 * 1024})
    try:
        ends = end_offsets(consumer, topic)
        if partitions is not None:
            ends = {p: end for p, end in ends.items() if p in partitions}
        first = _start_offsets(consumer, topic, list(ends), since)
        if starts is not None:
            first = {p: max(offset, starts.get(p, offset)) for p, offset in first.items()}
        remaining = {p for p, end in ends.items() if first[p] < end}
        assignment = [TopicPartition(topic, p, first[p]) for p in sorted(remaining)]
        if not assignment:
            return
        consumer.assign(assignment)
        left = sum(ends[p] - first[p] for p in remaining)
        yield from _drain(consumer, ends, remaining, batch_size, left)
    finally:
        consumer.close()


def _start_offsets(
    consumer: Consumer, topic: str, partitions: list[int], since: datetime | None
) -> dict[int, int]:
    if since is None:
        lows = (consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[0] for p in partitions)
        return dict(zip(partitions, lows, strict=True))
    millis = int(since.timestamp() * 1000)
    found = consumer.offsets_for_times([TopicPartition(topic, p, millis) for p in partitions], timeout=10)
    # -1: no message at or after the timestamp, so nothing to read there.
    return {
        tp.partition: tp.offset if tp.offset >= 0 else consumer.get_watermark_offsets(tp, timeout=10)[1]
        for tp in found
    }


def _drain(
    consumer: Consumer, ends: dict[int, int], remaining: set[int], batch_size: int, left: int
) -> Iterator[list[LogRecord]]:
    # ``consume(n, timeout)`` waits for all n messages or the whole timeout, so asking for
    # more than are left made every replay wait a full second at its end. ``left`` can
    # overcount (offsets with no message, such as transaction markers): then the last
    # call waits for the timeout, as before.
    while remaining:
        batch: list[LogRecord] = []
        for message in consumer.consume(max(1, min(batch_size, left)), timeout=1.0):
            error = message.error()
            if error is not None:
                if error.fatal():
                    raise KafkaError(f"reading the event log failed: {error}")
                continue
            partition, offset = position(message)
            if partition not in remaining or offset >= ends[partition]:
                continue
            batch.append(LogRecord(partition, offset, message.value() or b"", message.key()))
            if offset + 1 >= ends[partition]:
                remaining.discard(partition)
        left -= len(batch)
        if batch:
            yield batch


def position(message: Message) -> tuple[int, int]:
    """``(partition, offset)`` of a consumed (not an error) message."""
    partition, offset = message.partition(), message.offset()
    assert partition is not None and offset is not None, "consumed messages have a position"
    return partition, offset
