"""The delay tiers when their process dies: a timer whose forward the broker refuses is
never committed (the delay thread stops the process, and after a restart the timer is
forwarded and the job retried), and a SIGKILLed process's tier partitions reach a successor
within the group session."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Message
from confluent_kafka.admin import AdminClient

from brigade.kafka.clients import make_admin
from brigade.kafka.topology import tier_name
from schemas.codec import Codec
from schemas.records import RetryTimer
from testkit.jobs import spec
from testkit.processors import rate_limited_once, scripted_worker
from testkit.support import ConsumerThread, describe_group, poll_until
from tests.processors.conftest import Stack
from tests.processors.test_batch_failure import _max_message_bytes

RETRY_AFTER_MS = 8_000  # the timer waits this long in its tier: time to make the broker refuse it
# A successor's start plus the dead member's 10 s session, with room for a loaded machine;
# below librdkafka's default session of 45 s.
SESSION_BOUND_S = 35.0


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


class _Forwarded(ConsumerThread):
    """The retry timers the delay tiers hand back to the commands topic."""

    def __init__(self, stack: Stack) -> None:
        super().__init__(stack.settings, [stack.observer.topology.commands], name="forwarded")
        self.timers: list[RetryTimer] = []
        self._codec = Codec()
        self.start()

    def handle(self, message: Message) -> None:
        record = self._codec.decode(message.value() or b"")
        if isinstance(record, RetryTimer):
            self.timers.append(record)


def _holds_partitions(admin: AdminClient, group: str) -> bool:
    described = describe_group(admin, group)
    return described is not None and any(member.partitions for member in described[1])


@pytest.mark.chaos
def test_the_delay_tiers_of_a_killed_processor_are_taken_over_within_the_session_timeout(
        fresh_stack: Stack) -> None:
    admin = make_admin(fresh_stack.settings)
    tier_s, tier_topic = fresh_stack.observer.topology.retry_tiers()[0]
    forwarded = _Forwarded(fresh_stack)
    try:
        # Given a processor whose delay tiers hold the tier partitions, SIGKILLed (no LeaveGroup)
        fresh_stack.processors.start("p1")
        group = f"{fresh_stack.settings.kafka.topic_prefix}-delay-tiers"
        poll_until(lambda: _holds_partitions(admin, group), timeout_s=120, what="p1's delay tiers assigned")
        fresh_stack.processors.kill("p1")
        killed_at = time.monotonic()
        # When a timer comes due while a successor starts
        timer = RetryTimer(job_id=f"job-{uuid.uuid4().hex}", tenant_id="t", attempt=2,
                           due_at=datetime.now(UTC), tier=tier_name(tier_s))
        fresh_stack.client.send(tier_topic, timer.job_id.encode(), fresh_stack.client.codec.encode(timer))
        fresh_stack.processors.start("p2")
        # Then the successor forwards it once the dead member's session (10 s) expires, not
        # after librdkafka's default 45 s, which held due timers for 44 s here
        poll_until(lambda: timer in forwarded.timers, timeout_s=SESSION_BOUND_S,
                   what="the timer forwarded by p2")
        assert time.monotonic() - killed_at < SESSION_BOUND_S
    finally:
        forwarded.close()
