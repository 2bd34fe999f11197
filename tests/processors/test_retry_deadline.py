"""Retry-timer deadline: a job whose retry timer is lost is dispatched again by its processor."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from schemas.records import JobQueued, JobRetryScheduled
from testkit.jobs import spec
from testkit.processors import rate_limited_once, scripted_worker
from tests.processors.conftest import Stack, processor_settings


@pytest.fixture
def timers_lost(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    # No delay tiers run: every retry timer written to a delay topic is never forwarded, as
    # when the delay process lost it around a broker restart.
    stack = Stack(processor_settings(kafka_bootstrap, tmp_path, retry_timer_grace_s=2.0), tmp_path)
    stack.processors.start("p1", delay_tiers=False)
    try:
        yield stack
    finally:
        stack.close()





def test_a_job_whose_retry_timer_is_lost_is_dispatched_again_and_finishes(timers_lost: Stack) -> None:
    stack = timers_lost
    stop = threading.Event()
    worker = scripted_worker(stack.settings, rate_limited_once(500), stop)
    next(worker)
    try:
        # Given a job whose first attempt is rate limited, so a retry timer is scheduled
        s = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), max_attempts=3)
        stack.client.submit(s)
        retry = stack.observer.wait_event(s.job_id, "JobRetryScheduled", timeout=120)
        assert isinstance(retry, JobRetryScheduled) and retry.attempt == 2
        # When that timer never comes back and the retry is overdue by the grace period,
        # Then the processor dispatches attempt 2 itself, saying why
        queued = stack.observer.wait_event(s.job_id, "JobQueued", count=2, timeout=120)
        assert isinstance(queued, JobQueued)
        assert (queued.attempt, queued.reason) == (2, "retry_timer_overdue")
        assert queued.envelope.occurred_at >= retry.due_at
        # And the job succeeds on that attempt, dispatched once
        done = stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120)
        assert done.attempt == 2
        assert stack.observer.names(s.job_id).count("JobQueued") == 2
    finally:
        stop.set()
        next(worker, None)
