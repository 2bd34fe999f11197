"""A processor that dies after a batch's events are acknowledged but before its states are
written: its successor folds those events into the states before deciding anything, so
inputs it reads again, in whatever order, are never decided a second time."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from aiokafka import AIOKafkaProducer
from confluent_kafka import Producer

from brigade.kafka import topology
from brigade.settings import Settings
from brigade.status import TERMINAL
from processors.jobs import Incoming, JobProcessor
from processors.metrics import Metrics
from processors.recovery import marker_keys, partition_of
from projections.logread import read_log
from schemas.codec import Codec
from schemas.records import CancelJob, LifecycleEvent, SubmitJob, WorkItem, WorkOutcome, is_lifecycle
from testkit.jobs import cancel, outcome, spec, submit

Send = Callable[[str, bytes, bytes], Awaitable[Awaitable[object]]]


class KilledBeforeTableWrite(Exception):
    """Stands in for a SIGKILL between the batch's acks and its table write."""


class DyingTable(dict[bytes, bytes]):
    """A table whose writes fail, as if the process had died just before them."""

    def __setitem__(self, key: bytes, value: bytes) -> None:
        raise KilledBeforeTableWrite


@asynccontextmanager
async def real_send(settings: Settings) -> AsyncIterator[Send]:
    """Sends through an acks=all aiokafka producer, as the processors' app does."""
    producer = AIOKafkaProducer(bootstrap_servers=settings.kafka.bootstrap, acks="all")
    await producer.start()

    async def send(topic: str, key: bytes, value: bytes) -> Awaitable[object]:
        delivery: Awaitable[object] = await producer.send(topic, value, key=key)
        return delivery

    try:
        yield send
    finally:
        await producer.stop()


def processor(settings: Settings, table: MutableMapping[bytes, bytes], send: Send,
              marker_interval_s: float = 0.0) -> JobProcessor:
    # A marker after every batch unless a test says otherwise: the tail is then exactly the
    # dying batch's events.
    return JobProcessor(settings=settings, table=table, send=send, metrics=Metrics(),
                        marker_interval_s=marker_interval_s)


class Inputs:
    """Commands and outcomes as the processor's agent hands them over."""

    def __init__(self, settings: Settings) -> None:
        self.topology = topology.Topology(settings)
        self.codec = Codec()
        self.offset = 0

    def __call__(self, record: SubmitJob | CancelJob | WorkOutcome, *, partition: int) -> Incoming:
        topic = self.topology.outcomes if isinstance(record, WorkOutcome) else self.topology.commands
        self.offset += 1
        job_id = record.spec.job_id if isinstance(record, SubmitJob) else record.job_id
        return Incoming(topic=topic, partition=partition, offset=self.offset, key=job_id.encode(),
                        value=self.codec.encode(record), timestamp=0.0)


def events_of(settings: Settings, job_id: str) -> list[LifecycleEvent]:
    """Every event of the job on the log now, in log order."""
    codec = Codec()
    found: list[LifecycleEvent] = []
    for batch in read_log(settings, topology.Topology(settings).job_events):
        for record in batch:
            event = codec.decode(record.value)
            if is_lifecycle(event) and event.envelope.job_id == job_id:
                found.append(event)
    return found


def work_items_of(settings: Settings, job_id: str) -> list[WorkItem]:
    """Every work item of the job on the ``small`` pool's topics now."""
    codec = Codec()
    topo = topology.Topology(settings)
    found: list[WorkItem] = []
    for lane in ("interactive", "batch"):
        for batch in read_log(settings, topo.work("small", lane)):
            found += [r for r in (codec.decode(m.value) for m in batch)
                      if isinstance(r, WorkItem) and r.spec.job_id == job_id]
    return found


def test_inputs_read_again_in_another_order_after_a_crash_are_not_decided_again(applied: Settings) -> None:
    job = spec("fold me", created_at=datetime.now(UTC))
    inputs = Inputs(applied)
    partition = partition_of(job.job_id.encode(), applied.topics.partitions)

    async def scenario() -> None:
        table: dict[bytes, bytes] = {}
        async with real_send(applied) as send:
            # Given a job a processor has dispatched
            first = processor(applied, table, send)
            await first.process([inputs(submit(job), partition=partition)])
            # And a batch (cancel, then the worker's `started`) whose events the broker
            # acknowledged, after which the processor died before writing its states
            dying = processor(applied, DyingTable(table), send)
            with pytest.raises(KilledBeforeTableWrite):
                await dying.process([inputs(cancel(job), partition=partition),
                                     inputs(outcome(job, "started"), partition=partition)])
            # When its successor, from the table as it was, reads the same inputs in the
            # other order (two topics give no order between them)
            successor = processor(applied, table, send)
            await successor.process([inputs(outcome(job, "started"), partition=partition),
                                     inputs(cancel(job), partition=partition)])
            state = successor.state(job.job_id)
            assert state is not None and state.status == "cancelled"

    asyncio.run(scenario())
    # Then the job was decided once: one terminal event, never started after its cancel
    names = [type(e).__name__ for e in events_of(applied, job.job_id)]
    assert names == ["JobSubmitted", "JobQueued", "JobCancelled"]
    assert sum(name in {f"Job{s.capitalize()}" for s in TERMINAL} for name in names) == 1


def test_a_work_item_lost_with_the_crash_is_sent_again_by_the_successor(applied: Settings) -> None:
    job = spec("dispatch me", created_at=datetime.now(UTC))
    inputs = Inputs(applied)
    work_topics = {topology.Topology(applied).work("small", lane) for lane in ("interactive", "batch")}
    partition = partition_of(job.job_id.encode(), applied.topics.partitions)

    async def scenario() -> None:
        table: dict[bytes, bytes] = {}
        async with real_send(applied) as send:
            # Given a batch whose JobQueued the broker has, but whose work item never left
            # the dying process, and whose states were never written
            async def send_but_the_item(topic: str, key: bytes, value: bytes) -> Awaitable[object]:
                if topic in work_topics:
                    return asyncio.sleep(0)  # "acknowledged" by a process about to die
                return await send(topic, key, value)

            dying = processor(applied, DyingTable(table), send_but_the_item)
            with pytest.raises(KilledBeforeTableWrite):
                await dying.process([inputs(submit(job), partition=partition)])
            # When its successor reads the submit again
            successor = processor(applied, table, send)
            await successor.process([inputs(submit(job), partition=partition)])
            state = successor.state(job.job_id)
            assert state is not None and state.phase == "dispatched" and state.attempt == 1

    asyncio.run(scenario())
    # Then the job was decided once and its work item is on the work topic
    assert [type(e).__name__ for e in events_of(applied, job.job_id)] == ["JobSubmitted", "JobQueued"]
    assert [item.attempt for item in work_items_of(applied, job.job_id)] == [1]


def test_a_marker_older_than_the_table_folds_again_only_what_the_table_lacks(applied: Settings) -> None:
    first_job = spec("marked", created_at=datetime.now(UTC))
    partition = partition_of(first_job.job_id.encode(), applied.topics.partitions)
    # A second job on the same partition, dispatched after the partition's last marker
    later = next(s for n in range(1000) if partition_of(
        (s := spec(f"unmarked {n}", created_at=datetime.now(UTC))).job_id.encode(),
        applied.topics.partitions) == partition)
    inputs = Inputs(applied)
    marker = marker_keys(applied.topics.partitions)[partition]

    async def scenario() -> None:
        table: dict[bytes, bytes] = {}
        async with real_send(applied) as send:
            # Given a processor that marks a partition at most once an hour: its second
            # batch's states are stored, its marker is not
            first = processor(applied, table, send, marker_interval_s=3600)
            await first.process([inputs(submit(first_job), partition=partition)])
            marked = table[marker]
            await first.process([inputs(submit(later), partition=partition)])
            assert table[marker] == marked
            # And a batch whose events the broker acknowledged before the process died
            dying = processor(applied, DyingTable(table), send)
            with pytest.raises(KilledBeforeTableWrite):
                await dying.process([inputs(cancel(first_job), partition=partition)])
            # When a successor folds the tail after the older marker and decides again
            successor = processor(applied, table, send)
            await successor.process([inputs(cancel(first_job), partition=partition)])
            cancelled, dispatched = successor.state(first_job.job_id), successor.state(later.job_id)
            assert cancelled is not None and cancelled.status == "cancelled"
            assert dispatched is not None and dispatched.phase == "dispatched"

    asyncio.run(scenario())
    # Then the cancel was decided once, and the job the table already held was not
    # dispatched again: its events in the tail folded as redeliveries, sending nothing
    assert [type(e).__name__ for e in events_of(applied, first_job.job_id)] == \
        ["JobSubmitted", "JobQueued", "JobCancelled"]
    assert [type(e).__name__ for e in events_of(applied, later.job_id)] == ["JobSubmitted", "JobQueued"]
    assert [item.attempt for item in work_items_of(applied, later.job_id)] == [1]


def test_each_fold_marker_lands_on_its_own_partition_with_the_brokers_partitioner(applied: Settings) -> None:
    # Kafka clients place a key with murmur2; librdkafka's C implementation is the reference
    # here for the Python one the markers are chosen with.
    partitions = applied.topics.partitions
    keys = marker_keys(partitions)
    assert sorted(keys) == list(range(partitions))
    probe = topology.Topology(applied).commands
    delivered: dict[bytes | None, int | None] = {}
    producer = Producer({"bootstrap.servers": applied.kafka.bootstrap, "partitioner": "murmur2_random"})
    for key in keys.values():
        producer.produce(probe, b"", key=key,
                         on_delivery=lambda _err, msg: delivered.__setitem__(msg.key(), msg.partition()))
    assert producer.flush(30) == 0
    assert {delivered[key]: key for key in keys.values()} == keys
