"""A batch whose effects the broker refuses is never committed: the processor exits and a
restarted one decides the same inputs again."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from brigade.kafka.clients import make_admin
from testkit.jobs import spec
from testkit.support import poll_until
from tests.processors.conftest import Stack


def _max_message_bytes(admin: AdminClient, topic: str, value: str | None) -> None:
    op = AlterConfigOpType.DELETE if value is None else AlterConfigOpType.SET
    entry = ConfigEntry("max.message.bytes", value or "", incremental_operation=op)
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic, incremental_configs=[entry])
    for future in admin.incremental_alter_configs([resource]).values():
        future.result()


@pytest.mark.chaos
def test_a_batch_with_a_refused_effect_exits_uncommitted_and_is_decided_after_restart(
    fresh_stack: Stack,
) -> None:
    admin = make_admin(fresh_stack.settings)
    events = fresh_stack.observer.topology.job_events
    ok = spec(f"small-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
    big = spec("x" * 20_000, created_at=datetime.now(UTC))
    p1 = fresh_stack.processors.start("p1")
    # Given a processor that is deciding jobs
    fresh_stack.client.submit(ok)
    fresh_stack.observer.wait_event(ok.job_id, "JobQueued", timeout=120)
    # When the broker refuses one of a batch's effects (its JobSubmitted is too large)
    _max_message_bytes(admin, events, "4096")
    fresh_stack.client.submit(big)
    # Then the processor exits without committing the batch
    poll_until(lambda: p1.poll() is not None, timeout_s=120, what="the processor to exit")
    assert p1.returncode != 0
    fresh_stack.processors.killed.add("p1")
    # And once the broker accepts it again, a restarted processor decides the same input
    _max_message_bytes(admin, events, None)
    fresh_stack.processors.start("p2")
    fresh_stack.observer.wait_event(big.job_id, "JobQueued", timeout=120)
    assert fresh_stack.observer.names(big.job_id)[:2] == ["JobSubmitted", "JobQueued"]
