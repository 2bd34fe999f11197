"""Schedule-to-start: a work item that never starts is dispatched again by the processor."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from schemas.records import JobQueued, WorkItem, WorkOutcome
from testkit.jobs import spec
from testkit.processors import scripted_worker
from tests.processors.conftest import Stack, processor_settings


@pytest.fixture
def short_dispatch(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    stack = Stack(processor_settings(kafka_bootstrap, tmp_path, dispatch_timeout_s=2.0), tmp_path)
    stack.processors.start("p1")
    try:
        yield stack
    finally:
        stack.close()


def _lose_first_attempt(item: WorkItem) -> list[WorkOutcome]:
    # Attempt 1's message is read and dropped, as when a worker committed past it and died.
    if item.attempt == 1:
        return []
    base: dict[str, Any] = {"job_id": item.spec.job_id, "tenant_id": item.spec.tenant_id,
                            "attempt": item.attempt, "occurred_at": datetime.now(UTC), "worker": "w"}
    key = f"{item.spec.job_id}:{item.attempt}"
    return [
        WorkOutcome(outcome_id=f"{key}:started", kind="started", lease_ms=30_000, **base),
        WorkOutcome(outcome_id=f"{key}:succeeded", kind="succeeded", result_inline="{}",
                    latency_ms=1.0, batch_size=1, **base),
    ]


def test_a_lost_work_item_is_dispatched_again_and_the_job_finishes(short_dispatch: Stack) -> None:
    stack = short_dispatch
    stop = threading.Event()
    worker = scripted_worker(stack.settings, _lose_first_attempt, stop)
    next(worker)
    try:
        # Given a job with one attempt whose first work item is lost before it starts
        s = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), max_attempts=1)
        stack.client.submit(s)
        # When its dispatch timeout passes, Then the processor dispatches it again, saying why
        queued = stack.observer.wait_event(s.job_id, "JobQueued", count=2, timeout=120)
        assert isinstance(queued, JobQueued)
        assert (queued.attempt, queued.reason) == (2, "dispatch_timeout")
        # And the job succeeds on that attempt, its one counted attempt unspent by the loss
        done = stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120)
        assert done.attempt == 2
        assert stack.observer.names(s.job_id).count("JobQueued") == 2
    finally:
        stop.set()
        next(worker, None)
