"""After a rebalance, a processor raises lease and deadline checks only for the jobs of the
partitions it now decides, not for the states it still holds of partitions it lost."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta

from brigade.kafka import topology
from brigade.settings import Settings
from processors.jobs import JobProcessor
from processors.lifecycle import Job
from processors.metrics import Metrics
from processors.recovery import partition_of
from processors.state import encode_job
from schemas.records import JobSpec
from testkit.jobs import spec


def running_past_its_lease(job: JobSpec) -> Job:
    """A running job whose lease ran out five seconds ago."""
    return Job(job_id=job.job_id, tenant_id=job.tenant_id, status="running", sequence=3,
               phase="running", attempt=1, spec=job, pool="small", lane="batch",
               lease_deadline=datetime.now(UTC) - timedelta(seconds=5))


def test_checks_are_raised_only_for_the_partitions_the_processor_owns(applied: Settings) -> None:
    partitions = applied.topics.partitions
    jobs = [spec(f"lease {n}", created_at=datetime.now(UTC)) for n in range(12)]
    by_partition = {partition_of(j.job_id.encode(), partitions): j for j in jobs}
    assert len(by_partition) >= 2, "twelve ids all hashed to one partition"
    (kept_partition, kept), (_, lost) = sorted(by_partition.items())[:2]
    table = {j.job_id.encode(): encode_job(running_past_its_lease(j)) for j in (kept, lost)}
    sent: list[tuple[str, bytes]] = []

    async def send(topic: str, key: bytes, value: bytes) -> Awaitable[object]:
        sent.append((topic, key))
        delivered: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        delivered.set_result(None)
        return delivered

    processor = JobProcessor(settings=applied, table=table, send=send, metrics=Metrics())
    # Given a processor holding the states of two running jobs past their lease, when a
    # rebalance leaves it only the partition of one of them
    processor.reassigned(owned={kept_partition})
    # Then it checks that job only: the other's processor checks its own
    assert asyncio.run(processor.check()) == 1
    assert sent == [(topology.Topology(applied).commands, kept.job_id.encode())]
    # And with every partition it checks both
    processor.reassigned(owned=range(partitions))
    assert sorted(processor.alarms) == sorted(table)
