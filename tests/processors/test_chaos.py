"""Two processors share the partitions; one is SIGKILLed mid-stream. No job is lost or
decided twice."""

from __future__ import annotations

import threading
import time
import uuid
from collections import defaultdict
from datetime import UTC, datetime

import pytest
from confluent_kafka import TopicPartition

from brigade.kafka.clients import make_consumer
from brigade.status import TERMINAL
from processors.lifecycle import fold
from schemas.records import JobSucceeded, LifecycleEvent
from testkit.jobs import spec
from testkit.processors import scripted_worker, succeed
from testkit.support import poll_until
from tests.processors.conftest import Stack

JOBS = 300





def _both_assigned(stack: Stack) -> bool:
    # The admin API cannot describe a group that uses Faust's assignor (it times out), so
    # read each worker's own log of the generation it joined.
    logs = [(stack.processors.logs / f"{node}.log").read_text() for node in ("p1", "p2")]
    return all("app consumers id 2" in log for log in logs)


def _check_job(job_id: str, events: list[LifecycleEvent]) -> None:
    by_sequence: dict[int, set[str]] = defaultdict(set)
    for event in events:
        by_sequence[event.envelope.sequence].add(event.envelope.event_id)
    decided_twice = {seq: ids for seq, ids in by_sequence.items() if len(ids) > 1}
    assert not decided_twice, f"{job_id}: different events share a sequence: {decided_twice}"
    unique = {e.envelope.event_id: e for e in events}
    history = sorted(unique.values(), key=lambda e: e.envelope.sequence)
    state = fold(history)
    assert state is not None and state.status in TERMINAL
    assert sum(isinstance(e, JobSucceeded) for e in history) == 1


@pytest.mark.chaos
def test_sigkill_one_of_two_processors_loses_no_job_and_decides_none_twice(fresh_stack: Stack) -> None:
    chaos = fresh_stack
    stop = threading.Event()
    worker = scripted_worker(chaos.settings, lambda item: succeed(item, worker="chaos-worker"), stop)
    next(worker)
    try:
        # Given two processors that both own partitions
        chaos.processors.start("p1", delay_tiers=False)
        chaos.processors.start("p2", delay_tiers=False)
        poll_until(lambda: _both_assigned(chaos), timeout_s=90, what="two processors in the group")
        specs = [spec(f"chaos-{uuid.uuid4().hex}", created_at=datetime.now(UTC)) for _ in range(JOBS)]
        # When jobs stream in and p1 is killed with SIGKILL a third of the way through
        for index, s in enumerate(specs):
            chaos.client.producer.produce(chaos.client.topology.commands, key=s.job_id.encode(),
                                          value=chaos.client.codec.encode(_submit(s)))
            chaos.client.producer.poll(0)
            if index == JOBS // 3:
                chaos.client.producer.flush(10)
                poll_until(lambda: _done(chaos, specs[:20]), timeout_s=60, what="first jobs done")
                chaos.processors.kill("p1")
            time.sleep(0.01)  # a steady stream, not one burst
        chaos.client.producer.flush(10)
        # Then every job succeeds exactly once and no sequence number holds two decisions
        try:
            poll_until(lambda: _done(chaos, specs), timeout_s=120, what=f"all {JOBS} jobs terminal")
        except AssertionError as timeout:
            raise AssertionError(f"{timeout}\n{_stuck_report(chaos, specs)}") from None
        for s in specs:
            _check_job(s.job_id, chaos.observer.of(s.job_id))
    finally:
        stop.set()
        next(worker, None)


def _stuck_report(stack: Stack, specs: list[object]) -> str:
    """Which jobs are not done, what the log holds for them and the processors' log tails."""
    lines = []
    for s in specs:
        job_id = s.job_id  # type: ignore[attr-defined]
        if not any(isinstance(e, JobSucceeded) for e in stack.observer.of(job_id)):
            work = [topic for topic, item in stack.observer.work if item.spec.job_id == job_id]
            lines.append(f"{job_id}: events {stack.observer.names(job_id)} work {work} "
                         f"partition {stack.observer.partitions.get(job_id)}")
    return ("\n".join(lines[:20]) + f"\n({len(lines)} stuck)\n" + _group_positions(stack)
            + stack.processors.log_tail())


def _group_positions(stack: Stack) -> str:
    """The processor group's committed offset and the end of each input partition."""
    topology = stack.client.topology
    consumer = make_consumer(stack.settings, topology.processor_group)
    try:
        parts = [TopicPartition(t, p) for t in (topology.commands, topology.outcomes)
                 for p in range(stack.settings.topics.partitions)]
        committed = consumer.committed(parts, timeout=10)
        rows = [f"{tp.topic}[{tp.partition}] committed {tp.offset} end "
                f"{consumer.get_watermark_offsets(tp, timeout=10)[1]}" for tp in committed]
        return "\n".join(rows) + "\n"
    finally:
        consumer.close()


def _submit(s: object) -> object:
    from testkit.jobs import submit

    return submit(s)  # type: ignore[arg-type]


def _done(stack: Stack, specs: list[object]) -> bool:
    return all(
        any(isinstance(e, JobSucceeded) for e in stack.observer.of(s.job_id))  # type: ignore[attr-defined]
        for s in specs
    )
