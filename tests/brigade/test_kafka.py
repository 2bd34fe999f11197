"""The embedded broker and the topology, through the real Kafka wire protocol."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from confluent_kafka import Consumer, Producer

from brigade.errors import KafkaError
from brigade.kafka import topology
from brigade.kafka.clients import consumer_config, make_admin, producer_config
from brigade.kafka.local import LocalKafka
from brigade.settings import Settings, TopicSettings
from schemas.codec import Codec
from schemas.records import Envelope, JobSucceeded
from testkit.support import poll_until
from tests.conftest import free_port

codec = Codec()


def _event(job: str, sequence: int) -> JobSucceeded:
    envelope = Envelope(event_id=f"{job}-{sequence}", job_id=job, tenant_id="t",
                        occurred_at=datetime.now(UTC), sequence=sequence)
    return JobSucceeded(envelope=envelope, attempt=1, model="m", latency_ms=2.0)


def _consume(settings: Settings, topic: str, count: int, *, timeout_s: float = 30) -> list[bytes]:
    consumer = Consumer(consumer_config(settings, f"g-{uuid.uuid4().hex}"))
    consumer.subscribe([topic])
    received: list[bytes] = []
    deadline = time.monotonic() + timeout_s
    try:
        while len(received) < count and time.monotonic() < deadline:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                received.append(message.value())
    finally:
        consumer.close()
    return received


def test_encoded_events_travel_through_the_broker(settings: Settings, topics: topology.Topology) -> None:
    producer = Producer(producer_config(settings))
    sent = [_event(f"job-{i % 7}", i) for i in range(200)]
    for event in sent:
        producer.produce(topics.job_events, key=event.envelope.job_id, value=codec.encode(event))
    assert producer.flush(30) == 0
    received = [codec.decode(raw) for raw in _consume(settings, topics.job_events, len(sent))]
    assert sorted(received, key=lambda e: e.envelope.sequence) == sent


def test_one_jobs_events_keep_their_order(settings: Settings, topics: topology.Topology) -> None:
    producer = Producer(producer_config(settings))
    for sequence in range(1, 51):
        producer.produce(topics.job_events, key="one-job", value=codec.encode(_event("one-job", sequence)))
    producer.flush(30)
    received = [codec.decode(raw).envelope.sequence for raw in _consume(settings, topics.job_events, 50)]
    assert received == list(range(1, 51))


def test_apply_is_idempotent(settings: Settings, topics: topology.Topology) -> None:
    again = topology.apply(make_admin(settings), topics.specs())
    assert again.created == []
    assert again.drift == []
    assert sorted(again.unchanged) == sorted(s.name for s in topics.specs())


def test_apply_creates_every_declared_topic(settings: Settings, topics: topology.Topology) -> None:
    existing = make_admin(settings).list_topics(timeout=10).topics
    for spec in topics.specs():
        assert len(existing[spec.name].partitions) == spec.partitions
    assert {topics.retry(s) for s in settings.retry.tiers_s} == {
        f"{settings.kafka.topic_prefix}.retry.{n}" for n in ("1s", "5s", "30s", "2m", "10m")
    }


def test_apply_reports_partition_and_config_drift(settings: Settings, topics: topology.Topology) -> None:
    changed = settings.model_copy(update={"topics": TopicSettings(
        partitions=5, work_partitions=3, retry_partitions=1, events_retention_ms=1000)})
    report = topology.apply(make_admin(settings), topology.Topology(changed).specs())
    assert f"{topics.commands}: 3 partitions, topology says 5" in report.drift
    assert f"{topics.job_events}: retention.ms=-1, topology says 1000" in report.drift
    assert topics.work("default", "batch") in report.unchanged


@pytest.mark.slow
def test_local_broker_keeps_data_across_restart_and_leaves_no_process(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path / "kafka", port=free_port(), controller_port=free_port())
    settings = Settings(kafka={"bootstrap": broker.bootstrap, "topic_prefix": "restart"})
    broker.start()
    try:
        topology.apply(make_admin(settings), topology.Topology(settings).specs())
        producer = Producer(producer_config(settings))
        producer.produce(settings.topic("job-events"), key="j", value=codec.encode(_event("j", 1)))
        producer.flush(30)
        first_pid = broker.pid()
        assert broker.stop() is True
        assert broker.pid() is None
        assert first_pid is not None
        with pytest.raises(ProcessLookupError):
            import os

            os.kill(first_pid, 0)
        broker.start()
        received = _consume(settings, settings.topic("job-events"), 1)
        assert [codec.decode(raw).envelope.job_id for raw in received] == ["j"]
    finally:
        broker.stop()


def test_wait_ready_gives_up_with_a_clear_error(tmp_path: Path) -> None:
    broker = LocalKafka(data_dir=tmp_path, port=free_port(), controller_port=free_port())
    with pytest.raises(KafkaError, match="not ready"):
        broker.wait_ready(timeout_s=1)


def test_group_lag_counts_uncommitted_messages(settings: Settings, topics: topology.Topology) -> None:
    from brigade.kafka.lag import group_lag

    producer = Producer(producer_config(settings))
    for i in range(30):
        producer.produce(topics.commands, key=f"k{i}", value=b"x")
    producer.flush(30)
    group = f"{settings.kafka.topic_prefix}-lag"
    admin = make_admin(settings)
    assert group_lag(admin, settings.kafka.bootstrap, group, [topics.commands]) == 30
    # Given a consumer that reads and commits 10 messages
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topics.commands])
    read = 0
    deadline = time.monotonic() + 30
    while read < 10 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read += 1
            consumer.commit(message, asynchronous=False)
    consumer.close()
    # Then the lag is what is left
    assert group_lag(admin, settings.kafka.bootstrap, group, [topics.commands]) == 20


def test_brokers_setting_derives_bootstrap_and_replication() -> None:
    settings = Settings(kafka={"brokers": 3, "broker_port": 21000, "controller_port": 21001})
    assert settings.kafka.bootstrap == "127.0.0.1:21000,127.0.0.1:21002,127.0.0.1:21004"
    assert settings.topics.replication == 3
    spec = topology.Topology(settings).specs()[0]
    assert (spec.replication, spec.config["min.insync.replicas"]) == (3, "2")
    explicit = Settings(kafka={"brokers": 3, "bootstrap": "h:1"}, topics=TopicSettings(replication=2))
    assert (explicit.kafka.bootstrap, explicit.topics.replication) == ("h:1", 2)
    assert "min.insync.replicas" not in topology.Topology(Settings()).specs()[0].config


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_three_broker_cluster_survives_the_leader_sigkill(tmp_path: Path) -> None:
    from brigade.kafka.cluster import LocalCluster, free_port_run

    base = free_port_run(6)
    cluster = LocalCluster.on_ports(tmp_path / "kafka", count=3, port=base, controller_port=base + 1,
                                    heap="256m")
    settings = Settings(kafka={"bootstrap": cluster.bootstrap, "topic_prefix": "k3", "brokers": 3})
    cluster.start()
    try:
        # Given the topology on three brokers, replicated three times, two in sync required
        assert not topology.apply(make_admin(settings), topology.Topology(settings).specs()).drift
        topic = settings.topic("job-events")
        admin = make_admin(settings)

        def led_partition_zero() -> Any:
            # Metadata can name the new topic before its partitions have leaders.
            found = admin.list_topics(topic, timeout=10).topics[topic].partitions.get(0)
            return found if found is not None and found.leader >= 0 else None

        partition = poll_until(led_partition_zero, timeout_s=60, interval_s=0.5, what="partition 0's leader")
        assert len(partition.replicas) == 3
        # When the partition's leader is SIGKILLed
        cluster.node(partition.leader).kill()
        # Then acks=all writes to it still succeed, and every one is read back
        producer = Producer(producer_config(settings))
        for i in range(20):
            producer.produce(topic, partition=0, key=f"j{i}", value=codec.encode(_event(f"j{i}", 1)))
        assert producer.flush(120) == 0
        assert len(_consume(settings, topic, 20, timeout_s=120)) == 20
        cluster.node(partition.leader).start()
        assert len(cluster.pids()) == 3
    finally:
        cluster.stop()
    assert cluster.pids() == []
