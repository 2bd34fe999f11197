"""Session-scoped real services and function-scoped names, shared by every test package.

The broker is real Apache Kafka: the embedded KRaft broker on free loopback ports, or,
with ``BRIGADE_TEST_DOCKER=1`` and a Docker engine, testcontainers' Kafka. Set
``BRIGADE_TEST_BOOTSTRAP`` to reuse a broker that is already running.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import settings as hypothesis_settings

from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.local import LocalKafka
from brigade.net import free_port
from brigade.settings import Settings, TopicSettings

__all__ = ["free_port"]

# No per-example deadline: it is a timed assertion, and on a loaded 2-core machine an example
# that takes 360 ms instead of 12 ms fails the property for the machine's load, not for a bug.
hypothesis_settings.register_profile("brigade", deadline=None)
hypothesis_settings.load_profile("brigade")


@pytest.fixture(scope="session")
def kafka_bootstrap(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``host:port`` of a real Kafka broker for the whole test session."""
    reuse = os.environ.get("BRIGADE_TEST_BOOTSTRAP")
    if reuse:
        yield reuse
        return
    if os.environ.get("BRIGADE_TEST_DOCKER") == "1":
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer().with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    broker = LocalKafka(
        data_dir=tmp_path_factory.mktemp("kafka"), port=free_port(), controller_port=free_port(),
        heap="1g",  # a whole session of tests creates thousands of partitions over time
    )
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


@pytest.fixture
def settings(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Settings of one test: its own topic prefix and data directory on the shared broker."""
    prefix = f"t{uuid.uuid4().hex[:10]}"
    return Settings(
        data_dir=tmp_path / "brigade",
        kafka={"bootstrap": kafka_bootstrap, "topic_prefix": prefix, "client_id": prefix},
        topics=TopicSettings(partitions=3, work_partitions=3, retry_partitions=1),
        clickhouse_url=f"chdb://{tmp_path / 'clickhouse'}",
        object_store_url=f"file://{tmp_path / 'objects'}",
    )


@pytest.fixture
def topics(settings: Settings) -> Iterator[topology.Topology]:
    """The test's topology, applied to the broker; its topics are deleted afterwards."""
    topo = topology.Topology(settings)
    admin = make_admin(settings)
    report = topology.apply(admin, topo.specs())
    assert not report.drift
    yield topo
    # Every topic the test made (ours, and Faust's changelogs) shares the prefix. Deleting
    # them keeps one session's broker small however many tests run against it.
    prefix = settings.kafka.topic_prefix
    names = [name for name in admin.list_topics(timeout=10).topics if name.startswith(prefix)]
    if names:
        for future in admin.delete_topics(names, operation_timeout=30).values():
            future.result()
