"""A batch whose effects the broker refuses is never committed: the processor exits and a
restarted one decides the same inputs again."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from brigade.kafka.clients import make_admin
from testkit.jobs import spec
from testkit.support import poll_until
from tests.processors.conftest import Stack, processor_settings


def _max_message_bytes(admin: AdminClient, topic: str, value: str | None) -> None:
    op = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    entry = ConfigEntry("max.message.bytes", value or "", incremental_operation=op)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


@pytest.fixture
def stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    s = Stack(processor_settings(kafka_bootstrap, tmp_path), tmp_path)
    try:
        yield s
    finally:
        s.close()


@pytest.mark.chaos
def test_a_batch_with_a_refused_effect_exits_uncommitted_and_is_decided_after_restart(stack: Stack) -> None:
    admin = make_admin(stack.settings)
    events = stack.observer.topology.job_events
    ok = spec(f"small-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
    big = spec("x" * 20_000, created_at=datetime.now(UTC))
    p1 = stack.processors.start("p1")
    # Given a processor that is deciding jobs
    stack.client.submit(ok)
    stack.observer.wait_event(ok.job_id, "JobQueued", timeout=120)
    # When the broker refuses one of a batch's effects (its JobSubmitted is too large)
    _max_message_bytes(admin, events, "4096")
    stack.client.submit(big)
    # Then the processor exits without committing the batch
    poll_until(lambda: p1.poll() is not None, timeout_s=120, what="the processor to exit")
    assert p1.returncode != 0
    stack.processors.killed.add("p1")
    # And once the broker accepts it again, a restarted processor decides the same input
    _max_message_bytes(admin, events, None)
    stack.processors.start("p2")
    stack.observer.wait_event(big.job_id, "JobQueued", timeout=120)
    assert stack.observer.names(big.job_id)[:2] == ["JobSubmitted", "JobQueued"]
