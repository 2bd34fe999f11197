"""The processor decides an input as soon as nothing more is buffered, through the real broker."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from testkit.jobs import spec
from testkit.support import poll_until
from tests.processors.conftest import Stack, processor_settings

# Ten minutes: a batch that closes before this did so because its input ran dry.
WINDOW_MS = 600_000.0


@pytest.fixture
def long_window(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    settings = processor_settings(kafka_bootstrap, tmp_path)
    s = Stack(settings.model_copy(update={"processors_batch_window_ms": WINDOW_MS}), tmp_path)
    s.processors.start("p1")
    try:
        yield s
    finally:
        s.close()


def test_lone_and_burst_inputs_are_decided_without_waiting_for_the_window(long_window: Stack) -> None:
    stack = long_window
    # Given a processor whose batch window is ten minutes, when one command arrives alone,
    # then it is decided (the window never elapsed: the batch closed when the input ran dry)
    lone = spec(f"lone-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
    stack.client.submit(lone)
    stack.observer.wait_event(lone.job_id, "JobQueued", timeout=180)
    # When a burst arrives, then every command is decided exactly once
    burst = [spec(f"burst-{i}-{uuid.uuid4().hex}", created_at=datetime.now(UTC)) for i in range(300)]
    for s in burst:
        stack.client.submit(s)
    poll_until(lambda: all(stack.observer.names(s.job_id) == ["JobSubmitted", "JobQueued"] for s in burst),
               timeout_s=180, interval_s=0.2, what="every burst command decided once")
    stack.processors.assert_alive()
