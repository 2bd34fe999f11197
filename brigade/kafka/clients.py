"""Kafka client configuration shared by every Brigade process.

Producers are idempotent with ``acks=all``: an accepted job is durable before anyone is
told so, and a producer retry never writes a message twice.
"""

from __future__ import annotations

from typing import Any

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from brigade.settings import Settings

NOT_IDEMPOTENT: dict[str, Any] = {"enable.idempotence": False}
"""Overrides for every producer of Brigade's own commands and timers (the API, the producer
SDK, the delay tiers): acks=all without idempotence. Right after a broker restart the
idempotent librdkafka client reported writes delivered that the log never held (chaos runs:
the first sequence numbers of a fresh producer id missing on a partition that had no leader
yet; docs/benchmarks.md, "Delivery under faults"). A retried write may be stored twice; the
job processor drops the repeat (same job id, same payload), as it does any repeated command."""


def producer_config(settings: Settings, **overrides: Any) -> dict[str, Any]:
    """Durable producer settings: idempotent, acks=all, small linger for batching."""
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "client.id": settings.kafka.client_id,
        "acks": "all",
        "enable.idempotence": True,
        "linger.ms": 2,
        # No lz4: Faust's aiokafka consumers decode only gzip without the optional cramjam
        # package, and would crash on lz4 batches written by confluent producers.
        "compression.type": "none",
        # Same key -> same partition as Faust/aiokafka (Java murmur2): the job processor's
        # state for a job lives on the partition its key hashes to on every topic.
        "partitioner": "murmur2_random",
    }
    config.update(overrides)
    return config


def consumer_config(settings: Settings, group: str, **overrides: Any) -> dict[str, Any]:
    """Consumer settings with manual commits: offsets move only after the effect is done.

    A dead member's partitions move to the others after ``kafka.session_timeout_s`` (10 s).
    """
    config: dict[str, Any] = {
        "bootstrap.servers": settings.kafka.bootstrap,
        "client.id": settings.kafka.client_id,
        "group.id": group,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        "enable.partition.eof": False,
        # A member that dies without leaving (SIGKILL, os._exit) keeps its partitions until
        # its session expires: with librdkafka's 45 s default a restarted delay tier sat 44 s
        # on due retry timers (measured). The Faust apps use the same setting.
        "session.timeout.ms": int(settings.kafka.session_timeout_s * 1000),
        "heartbeat.interval.ms": 1_000,
    }
    config.update(overrides)
    return config


def make_producer(settings: Settings, **overrides: Any) -> Producer:
    """A durable producer (see ``producer_config``)."""
    return Producer(producer_config(settings, **overrides))


def make_consumer(settings: Settings, group: str, **overrides: Any) -> Consumer:
    """A manually committing consumer (see ``consumer_config``)."""
    return Consumer(consumer_config(settings, group, **overrides))


def make_admin(settings: Settings) -> AdminClient:
    """An admin client for topology and lag look-ups."""
    return AdminClient({"bootstrap.servers": settings.kafka.bootstrap})
