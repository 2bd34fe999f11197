"""A processor restarted under its static member name (``--instance``) replaces its dead self
in the processors' group and in the delay tiers' group at once, instead of joining beside it
and waiting for its session to expire.

The session is a minute here, so "at once" and "after the session" cannot be confused on a
loaded machine: the restart must be back well within it."""

from __future__ import annotations

import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from brigade.kafka.clients import make_admin
from testkit.jobs import spec
from testkit.processors import rate_limited_once, scripted_worker
from testkit.support import GroupMember, describe_group, poll_until
from tests.processors.conftest import Stack, processor_settings

INSTANCES = ["p-1", "p-2"]
SESSION_S = 60.0
BACK_WITHIN_S = 30.0  # a process start and a join; a dynamic member would wait out SESSION_S


@pytest.fixture
def long_session_stack(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    """A stack of the test's own whose group members have a one-minute session."""
    settings = processor_settings(kafka_bootstrap, tmp_path)
    kafka = settings.kafka.model_copy(update={"session_timeout_s": SESSION_S})
    stack = Stack(settings.model_copy(update={"kafka": kafka}), tmp_path)
    try:
        yield stack
    finally:
        stack.close()


def _settled(admin: AdminClient, groups: list[str], seen: list[list[GroupMember]],
             dead: dict[str, str] | None = None) -> dict[str, list[GroupMember]] | None:
    """Every group's members once each group is Stable with p-1 and p-2 and holds partitions
    (with ``dead``, once p-1 is there under a member id other than its dead one); every
    member list read is appended to ``seen``.

    The delay tiers' topics have one partition each: librdkafka's range assignor gives all
    of them to one member, so only the group as a whole is required to hold partitions."""
    settled: dict[str, list[GroupMember]] = {}
    for group in groups:
        described = describe_group(admin, group)
        if described is None:
            return None
        state, members = described
        seen.append(members)
        if (state != "STABLE" or sorted(m.instance or "" for m in members) != INSTANCES
                or not any(m.partitions for m in members)):
            return None
        if dead is not None and any(m.member_id == dead[group] for m in members):
            return None
        settled[group] = members
    return settled


def _id_of(members: list[GroupMember], instance: str) -> str:
    [member] = [m for m in members if m.instance == instance]
    return member.member_id


@pytest.mark.chaos
def test_a_static_processor_restarted_replaces_its_dead_self_at_once(long_session_stack: Stack) -> None:
    admin = make_admin(long_session_stack.settings)
    groups = [long_session_stack.observer.topology.processor_group,
              f"{long_session_stack.settings.kafka.topic_prefix}-delay-tiers"]
    stop = threading.Event()
    worker = scripted_worker(long_session_stack.settings, rate_limited_once(500), stop)
    next(worker)
    seen: list[list[GroupMember]] = []
    try:
        # Given two static processors in both groups
        long_session_stack.processors.start("n1", instance="p-1")
        long_session_stack.processors.start("n2", instance="p-2")
        before = poll_until(lambda: _settled(admin, groups, seen), timeout_s=120,
                            what="both members assigned")
        dead = {group: _id_of(before[group], "p-1") for group in groups}
        survivor = {group: _id_of(before[group], "p-2") for group in groups}
        # When p-1 is SIGKILLed and restarted under its name
        long_session_stack.processors.kill("n1")
        seen.clear()
        long_session_stack.processors.start("n1-again", instance="p-1")
        # Then the new p-1 replaces its dead self in both groups well within the dead one's
        # session, and p-2 stays the same member throughout
        poll_until(lambda: _settled(admin, groups, seen, dead), timeout_s=BACK_WITHIN_S,
                   what="p-1 back in both groups")
        for members in seen:
            assert {m.member_id for m in members if m.instance == "p-2"} <= set(survivor.values()), members
        # And jobs are decided, retried through the delay tiers, and succeed on every partition
        jobs = [spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), max_attempts=3)
                for _ in range(6)]
        for s in jobs:
            long_session_stack.client.submit(s)
        for s in jobs:
            assert long_session_stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120).attempt == 2
    finally:
        stop.set()
        next(worker, None)
