"""A retry timer whose forward the broker refuses is never committed: the delay thread
stops the process, and after a restart the timer is forwarded and the job retried."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime

import pytest

from brigade.kafka.clients import make_admin
from testkit.jobs import spec
from testkit.processors import rate_limited_once, scripted_worker
from testkit.support import poll_until
from tests.processors.conftest import Stack
from tests.processors.test_batch_failure import _max_message_bytes

RETRY_AFTER_MS = 8_000  # the timer waits this long in its tier: time to make the broker refuse it





@pytest.mark.chaos
def test_a_refused_timer_forward_stops_the_process_and_is_retried_after_restart(fresh_stack: Stack) -> None:
    admin = make_admin(fresh_stack.settings)
    commands = fresh_stack.observer.topology.commands
    stop = threading.Event()
    worker = scripted_worker(fresh_stack.settings, rate_limited_once(RETRY_AFTER_MS), stop)
    next(worker)
    p1 = fresh_stack.processors.start("p1")
    try:
        # Given a job waiting in a delay tier for its retry
        s = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), max_attempts=3)
        fresh_stack.client.submit(s)
        fresh_stack.observer.wait_event(s.job_id, "JobRetryScheduled", timeout=120)
        # When the broker refuses the timer's forward to the commands topic
        _max_message_bytes(admin, commands, "64")
        # Then the process stops (its supervisor would restart it) without committing the timer
        poll_until(lambda: p1.poll() is not None, timeout_s=120, what="the processor to exit")
        assert p1.returncode != 0
        fresh_stack.processors.killed.add("p1")
        # And a restarted processor forwards it: the job is retried and succeeds
        _max_message_bytes(admin, commands, None)
        fresh_stack.processors.start("p2")
        done = fresh_stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120)
        assert done.attempt == 2
    finally:
        stop.set()
        next(worker, None)
