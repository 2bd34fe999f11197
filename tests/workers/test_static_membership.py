"""A worker restarted under its static member name (``--instance``) replaces its dead self in
the group at once, instead of joining beside it and waiting for its session to expire; the
other worker stays the same member, and every job finishes once.

The session is a minute here, so "at once" and "after the session" cannot be confused on a
loaded machine: the restart must be back well within it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient

from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.topology import Topology
from brigade.settings import LaneSettings, PoolSettings, Settings
from testkit.support import GroupMember, describe_group, poll_until
from workers.emulator import EmulatorConfig, create_emulator_app

from .kafka_harness import StandInProcessor, WorkerProcess, make_spec
from .uvicorn_server import serve

MODEL = "emulated-minilm"
SESSION_S = 60.0
BACK_WITHIN_S = 30.0  # a process start and a join; a dynamic member would wait out SESSION_S


@pytest.fixture
def emulator() -> Iterator[str]:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=5, item_latency_ms=0))) as url:
        yield url


def _members(admin: AdminClient, group: str) -> list[GroupMember] | None:
    described = describe_group(admin, group)
    return None if described is None else described[1]


@pytest.mark.chaos
def test_a_static_worker_restarted_replaces_its_dead_self_at_once(
    settings: Settings, emulator: str, tmp_path: Path
) -> None:
    pool = PoolSettings(model=MODEL, endpoint=emulator, max_concurrency=2,
                        batch=LaneSettings(max_batch_size=5, max_delay_ms=20, token_budget=10_000))
    kafka = settings.kafka.model_copy(update={"session_timeout_s": SESSION_S})
    cfg = settings.model_copy(update={"pools": {"p": pool}, "default_pool": "p", "kafka": kafka})
    admin = make_admin(cfg)
    assert not topology.apply(admin, Topology(cfg).specs()).drift
    group = Topology(cfg).worker_group(["p"])
    processor = StandInProcessor(cfg)
    workers = [WorkerProcess(cfg, ["p"], tmp_path / "a.log", instance="w-a"),
               WorkerProcess(cfg, ["p"], tmp_path / "b.log", instance="w-b")]
    processor.workers.extend(workers)
    try:
        # Given two static workers sharing the partitions, both working
        def both_assigned() -> dict[str | None, GroupMember] | None:
            members = _members(admin, group)
            if members is None or len(members) != 2 or not all(m.partitions for m in members):
                return None
            return {m.instance: m for m in members}

        before = poll_until(both_assigned, timeout_s=120, what="two members assigned")
        warm = [make_spec(f"warm {i}") for i in range(12)]
        for spec in warm:
            processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: all(s.job_id in processor.finished for s in warm), timeout=120,
                           what="the first jobs")
        # When w-a is SIGKILLed and restarted under its name
        workers[0].kill()
        workers.append(WorkerProcess(cfg, ["p"], tmp_path / "a2.log", instance="w-a"))
        processor.workers.append(workers[-1])

        def rejoined() -> dict[str | None, GroupMember] | None:
            members = both_assigned()
            replaced = members is not None and members["w-a"].member_id != before["w-a"].member_id
            return members if replaced else None

        # Then w-a is back with its partitions well within its dead self's session, and w-b
        # is the same member with the same partitions
        after = poll_until(rejoined, timeout_s=BACK_WITHIN_S, what="w-a back in the group")
        assert after["w-b"] == before["w-b"]
        assert after["w-a"].partitions == before["w-a"].partitions
        # And jobs on every partition finish, each once
        specs = [make_spec(f"after {i}") for i in range(12)]
        for spec in specs:
            processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: all(s.job_id in processor.finished for s in specs), timeout=120,
                           what="every job after the restart")
        assert all(processor.emitted[s.job_id] == 1 for s in warm + specs)
    finally:
        for worker in workers:
            worker.kill()
        processor.close()
