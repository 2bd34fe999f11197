"""Schedule-to-start: a work item that never starts is dispatched again by the processor, once
the workers have committed past it; an item still ahead of them (behind a backlog, or
overtaken by later items) is left to run."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from brigade.kafka.topology import Topology
from brigade.settings import Settings, TopicSettings
from schemas.codec import Codec
from schemas.records import JobQueued, WorkItem, WorkOutcome
from testkit.jobs import spec
from testkit.processors import running, scripted_worker, succeed, work_clients
from testkit.support import poll_until
from tests.processors.conftest import Stack, processor_settings


@pytest.fixture
def short_dispatch(kafka_bootstrap: str, tmp_path: Path) -> Iterator[Stack]:
    # One work partition: every item below is read in the order it was dispatched.
    settings = processor_settings(kafka_bootstrap, tmp_path, dispatch_timeout_s=3.0)
    topics = TopicSettings(partitions=3, work_partitions=1, retry_partitions=1)
    stack = Stack(settings.model_copy(update={"topics": topics}), tmp_path)
    stack.processors.start("p1")
    try:
        yield stack
    finally:
        stack.close()


def overtaking_worker(settings: Settings, held_job: str, release: threading.Event,
                      stop: threading.Event) -> Iterator[None]:
    """A worker that holds ``held_job``'s item (not started, not committed: a batch waiting
    for a lane) and runs the items after it at once, until ``release``; it commits only the
    prefix of items it is done with, as Brigade's workers do."""
    topology, codec = Topology(settings), Codec()
    consumer, producer = work_clients(settings)

    def answer(item: WorkItem) -> None:
        for outcome in succeed(item):
            producer.produce(topology.outcomes, key=outcome.job_id.encode(), value=codec.encode(outcome))
        producer.flush(10)

    def run() -> None:
        held: WorkItem | None = None
        last = None
        while not stop.is_set():
            if held is not None and release.is_set():
                answer(held)
                held = None
                if last is not None:
                    consumer.commit(message=last, asynchronous=False)
            message = consumer.poll(0.1)
            if message is None or message.error() is not None:
                continue
            item, last = codec.decode_as(message.value() or b"", WorkItem), message
            if item.spec.job_id == held_job and held is None and not release.is_set():
                held = item
                continue
            answer(item)
            if held is None:
                consumer.commit(message=message, asynchronous=False)
        producer.flush(10)
        consumer.close()

    yield from running(run, stop)


def test_a_lost_work_item_is_dispatched_again_and_the_job_finishes(short_dispatch: Stack) -> None:
    stack = short_dispatch
    stop = threading.Event()
    lost: set[str] = set()

    def lose_first_attempt(item: WorkItem) -> list[WorkOutcome]:
        # Attempt 1's message is read and dropped, as when a worker committed past it and died.
        return [] if item.spec.job_id in lost and item.attempt == 1 else succeed(item)

    worker = scripted_worker(stack.settings, lose_first_attempt, stop)
    next(worker)
    try:
        # Given a job with one attempt whose first work item is lost before it starts,
        # and a later job on the same work partition that starts
        s = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC), max_attempts=1)
        lost.add(s.job_id)
        stack.client.submit(s)
        later = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
        stack.client.submit(later)
        stack.observer.wait_event(later.job_id, "JobSucceeded", timeout=120)
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


def test_work_items_queued_behind_a_backlog_are_not_dispatched_again(short_dispatch: Stack) -> None:
    stack = short_dispatch

    def slow_model(item: WorkItem) -> list[WorkOutcome]:
        time.sleep(0.5)  # the model's latency: one item at a time makes the backlog
        return succeed(item)

    stop = threading.Event()
    worker = scripted_worker(stack.settings, slow_model, stop)
    next(worker)
    try:
        # Given more jobs on one work partition than the worker gets through in a dispatch timeout
        specs = [spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC)) for _ in range(12)]
        for s in specs:
            stack.client.submit(s)
        # When the worker works through the backlog, older items starting all along
        done = [stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120) for s in specs]
        # Then every job ran on its first and only dispatch, though most waited past the timeout
        assert [d.attempt for d in done] == [1] * len(specs)
        assert [stack.observer.names(s.job_id).count("JobQueued") for s in specs] == [1] * len(specs)
        logs = "".join(log.read_text() for log in stack.processors.logs.glob("*.log"))
        assert "held: the workers have not reached its item" in logs
    finally:
        stop.set()
        next(worker, None)


def test_an_item_overtaken_by_later_ones_is_not_dispatched_again(short_dispatch: Stack) -> None:
    stack = short_dispatch
    first = spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
    later = [spec(f"job-{uuid.uuid4().hex}", created_at=datetime.now(UTC)) for _ in range(3)]
    stop, release = threading.Event(), threading.Event()
    worker = overtaking_worker(stack.settings, first.job_id, release, stop)
    next(worker)
    try:
        # Given a job whose item a worker holds while the items dispatched after it run
        # (one partition's batches finishing out of order, or a replacement catching up)
        stack.client.submit(first)
        stack.observer.wait_event(first.job_id, "JobQueued", timeout=120)
        for s in later:
            stack.client.submit(s)
        for s in later:
            stack.observer.wait_event(s.job_id, "JobSucceeded", timeout=120)
        # When its dispatch deadline passes, the workers' commits still before its item
        held = f"dispatch deadline of {first.job_id} held"

        def decided() -> str | None:
            if stack.observer.names(first.job_id).count("JobQueued") > 1:
                return "dispatched again"
            logs = "".join(log.read_text() for log in stack.processors.logs.glob("*.log"))
            return "held" if held in logs else None

        # Then the processor holds it rather than dispatching it again
        assert poll_until(decided, timeout_s=120, what="the deadline's decision") == "held"
        # And once the worker gets to it, the job finishes on its first and only dispatch
        release.set()
        done = stack.observer.wait_event(first.job_id, "JobSucceeded", timeout=120)
        assert done.attempt == 1
        assert stack.observer.names(first.job_id).count("JobQueued") == 1
    finally:
        stop.set()
        next(worker, None)
