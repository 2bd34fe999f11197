"""Consumer lag: how far a consumer group is behind the end of its topics.

Lag is Brigade's leading signal: ingress sheds load on it, ``brigade top`` shows it.
"""

from __future__ import annotations

from collections.abc import Iterable

from confluent_kafka import Consumer, ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import AdminClient

from brigade.errors import KafkaError

Offsets = dict[tuple[str, int], int]


def committed_offsets(admin: AdminClient, group: str, *, timeout_s: float = 5.0) -> Offsets:
    """``(topic, partition) → committed offset`` of ``group`` (partitions never committed are absent)."""
    futures = admin.list_consumer_group_offsets([ConsumerGroupTopicPartitions(group)],
                                                request_timeout=timeout_s)
    try:
        result = futures[group].result()
    except Exception as exc:  # the admin API raises KafkaException and plain exceptions
        raise KafkaError(f"reading offsets of group {group} failed: {exc}") from exc
    return {(tp.topic, tp.partition): tp.offset for tp in result.topic_partitions if tp.offset >= 0}


def groups_named(admin: AdminClient, prefix: str, *, timeout_s: float = 5.0) -> list[str]:
    """The ids of the consumer groups whose name starts with ``prefix``."""
    try:
        listing = admin.list_consumer_groups(request_timeout=timeout_s).result()
    except Exception as exc:  # the admin API raises KafkaException and plain exceptions
        raise KafkaError(f"listing consumer groups failed: {exc}") from exc
    if listing.errors:
        # The client reports an unreachable broker here, with an empty or partial listing,
        # rather than raising: a caller must not take it for "no such group".
        raise KafkaError(f"listing consumer groups failed: {listing.errors[0]}")
    return sorted(g.group_id for g in listing.valid if g.group_id.startswith(prefix))


def end_offsets(bootstrap: str, topics: Iterable[str], *, timeout_s: float = 5.0) -> Offsets:
    """``(topic, partition) → high watermark`` for every partition of ``topics``."""
    probe = Consumer({"bootstrap.servers": bootstrap, "group.id": "brigade-lag-probe",
                      "enable.auto.commit": False})
    try:
        metadata = probe.list_topics(timeout=timeout_s).topics
        ends = {}
        for topic in topics:
            if topic not in metadata:
                continue
            for partition in metadata[topic].partitions:
                _, high = probe.get_watermark_offsets(TopicPartition(topic, partition), timeout=timeout_s)
                ends[(topic, partition)] = high
        return ends
    finally:
        probe.close()


def group_lag(admin: AdminClient, bootstrap: str, group: str, topics: Iterable[str]) -> int:
    """Messages in ``topics`` that ``group`` has not committed yet (never-read partitions count whole)."""
    ends = end_offsets(bootstrap, topics)
    committed = committed_offsets(admin, group)
    return sum(max(0, high - committed.get(key, 0)) for key, high in ends.items())
