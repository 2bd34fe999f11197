"""Helpers for the projection tests: a chDB-only database fixture and log producers."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Iterator
from pathlib import Path

import pytest

from brigade.kafka.clients import make_producer
from brigade.settings import Settings
from projections.backends import connect
from projections.migrations import apply_migrations
from projections.simulate import key_of
from projections.types import ClickHouse
from schemas import records as r
from schemas.codec import Codec


@pytest.fixture
def chdb(chdb_dir: Path) -> Iterator[ClickHouse]:
    """A fresh, migrated database on the session's chDB (for tests that need Kafka too)."""
    database = f"p_{uuid.uuid4().hex[:12]}"
    ch = connect(f"chdb://{chdb_dir}", database=database)
    apply_migrations(ch)
    try:
        yield ch
    finally:
        ch.execute(f"DROP DATABASE IF EXISTS {database}")
        ch.close()


def produce(
    settings: Settings, topic: str, events: Iterable[r.LifecycleEvent | r.CircuitEvent | bytes]
) -> int:
    """Write events (or raw bytes, keyed ``junk``) to ``topic``; return how many."""
    codec = Codec()
    producer = make_producer(settings)
    count = 0
    for event in events:
        if isinstance(event, bytes):
            producer.produce(topic, key=b"junk", value=event)
        else:
            producer.produce(topic, key=key_of(event), value=codec.encode(event))
        count += 1
        if count % 10_000 == 0:
            producer.flush()
    assert producer.flush(30) == 0
    return count
