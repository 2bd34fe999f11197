"""Fixtures for processor tests against the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.settings import RetrySettings, Settings, TopicSettings
from testkit.jobs import pools
from testkit.processors import Client, Observer, Processors


def processor_settings(bootstrap: str, tmp: Path, **retry: float) -> Settings:
    """Settings with two pools (``big`` falls back to ``small``), short leases, fast checks."""
    prefix = f"p{uuid.uuid4().hex[:10]}"
    policy = {"base_s": 0.2, "cap_s": 2.0, "lease_s": 30.0, "lease_check_interval_s": 0.2, **retry}
    return Settings(
        data_dir=tmp / "brigade",
        kafka={"bootstrap": bootstrap, "topic_prefix": prefix, "client_id": prefix},
        topics=TopicSettings(partitions=3, work_partitions=2, retry_partitions=1),
        pools=pools(),
        default_pool="small",
        routes=[{"pool": "big", "long_context": True}],
        retry=RetrySettings(**policy),
        clickhouse_url=f"chdb://{tmp / 'clickhouse'}",
        object_store_url=f"file://{tmp / 'objects'}",
    )


class Stack:
    """Settings, applied topics, processor processes, a client and an observer."""

    def __init__(self, settings: Settings, tmp: Path) -> None:
        self.settings = settings
        report = topology.apply(make_admin(settings), topology.Topology(settings).specs())
        assert not report.drift
        self.processors = Processors(settings, tmp)
        self.client = Client(settings)
        self.observer = Observer(settings, self.processors)

    def close(self) -> None:
        self.processors.close()
        self.observer.close()


@pytest.fixture(scope="module")
def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One processor process shared by a module's scenarios (each uses its own job ids)."""
    tmp = tmp_path_factory.mktemp("processors")
    s = Stack(processor_settings(kafka_bootstrap, tmp), tmp)
    s.processors.start("p1")
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def fresh_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of one test's own, no processor started (the test starts and kills them)."""
    s = Stack(processor_settings(kafka_bootstrap, tmp_path), tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.fixture
def applied(kafka_bootstrap: str, tmp_path: Path) -> Settings:
    """Processor settings with their topics applied and no processor running (for tests that
    drive a ``JobProcessor`` in process against the real broker)."""
    settings = processor_settings(kafka_bootstrap, tmp_path)
    assert not topology.apply(make_admin(settings), topology.Topology(settings).specs()).drift
    return settings
