"""A command published straight to the commands topic on a partition other than its job's
(no key, or another client's partitioner: librdkafka's default hashes with CRC32) is
forwarded to the job's own partition, where its single writer decides it."""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime

import pytest
from confluent_kafka import Producer

from brigade.kafka import topology
from brigade.settings import Settings
from processors.jobs import Incoming, JobProcessor
from processors.metrics import Metrics
from processors.recovery import partition_of
from projections.logread import read_log
from schemas.codec import Codec
from testkit.jobs import spec, submit
from tests.processors.conftest import Stack
from tests.processors.test_fold_recovery import events_of, real_send


@pytest.mark.parametrize("keyed", [True, False], ids=["keyed", "keyless"])
def test_a_command_on_another_partition_is_forwarded_to_its_jobs_partition(applied: Settings,
                                                                           keyed: bool) -> None:
    job = spec(f"misrouted {uuid.uuid4()}", created_at=datetime.now(UTC))
    home = partition_of(job.job_id.encode(), applied.topics.partitions)
    elsewhere = (home + 1) % applied.topics.partitions
    commands = topology.Topology(applied).commands
    value = Codec().encode(submit(job))

    async def scenario() -> None:
        table: dict[bytes, bytes] = {}
        async with real_send(applied) as send:
            processor = JobProcessor(settings=applied, table=table, send=send, metrics=Metrics())
            # When a submit arrives on a partition that is not its job's
            await processor.process([Incoming(topic=commands, partition=elsewhere, offset=0,
                                              key=job.job_id.encode() if keyed else None,
                                              value=value, timestamp=0.0)])
            # Then it is not decided there
            assert processor.state(job.job_id) is None

    asyncio.run(scenario())
    assert events_of(applied, job.job_id) == []
    # But forwarded, keyed by the job id, to the job's own partition
    [forwarded] = [r for batch in read_log(applied, commands, partitions=[home]) for r in batch]
    assert forwarded.key == job.job_id.encode() and forwarded.value == value


def test_a_job_published_with_librdkafkas_default_partitioner_is_decided(stack: Stack) -> None:
    # consistent_random (CRC32) is what a plain confluent-kafka or librdkafka client uses:
    # find a job it places on another partition than murmur2 does.
    partitions = stack.settings.topics.partitions
    producer = Producer({"bootstrap.servers": stack.settings.kafka.bootstrap,
                         "partitioner": "consistent_random"})
    commands = stack.observer.topology.commands
    codec = Codec()
    placed: list[int | None] = []  # one message in flight at a time: the last is this job's
    for n in range(50):
        job = spec(f"crc32 {uuid.uuid4()} {n}", created_at=datetime.now(UTC))
        key = job.job_id.encode()
        producer.produce(commands, codec.encode(submit(job)), key=key,
                         on_delivery=lambda _err, msg: placed.append(msg.partition()))
        assert producer.flush(30) == 0
        if placed[-1] != partition_of(key, partitions):
            break
    else:
        pytest.fail("fifty job ids all landed where murmur2 puts them")
    # The job is decided (on its own partition, after the forward) like any other
    stack.observer.wait_event(job.job_id, "JobQueued", timeout=60)
    assert stack.observer.names(job.job_id)[:2] == ["JobSubmitted", "JobQueued"]
    assert stack.observer.partitions[job.job_id] == partition_of(key, partitions)
