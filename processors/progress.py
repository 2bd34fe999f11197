"""How far the workers have got on each work partition, seen from the attempts that started.

A dispatched job that has not started by its dispatch deadline is either lost (its message
was committed past, or skipped) or still waiting behind a backlog. Workers read a work
partition in offset order, so once an attempt dispatched at or after the job's own
dispatch, on the same partition, has started, the workers have read past the job's item:
if it has not started by then it will not. Until that is seen, the job is taken to be
queued behind a backlog and its re-dispatch waits (up to ``retry.dispatch_backlog_max_s``,
which covers a partition with no later traffic and a processor that restarted and forgot
what it had seen).
"""

from __future__ import annotations

from datetime import datetime

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]


def work_partition(key: bytes, partitions: int) -> int:
    """The work-topic partition a message keyed ``key`` goes to (the producer's default)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


class WorkProgress:
    """Per (work topic, partition): the latest ``dispatched_at`` of an attempt that started."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._reached: dict[tuple[str, int], datetime] = {}

    def started(self, topic: str, key: bytes, dispatched_at: datetime) -> None:
        """An attempt dispatched at ``dispatched_at`` (keyed ``key``) started on ``topic``."""
        where = (topic, work_partition(key, self._partitions))
        seen = self._reached.get(where)
        if seen is None or dispatched_at > seen:
            self._reached[where] = dispatched_at

    def passed(self, topic: str, key: bytes, dispatched_at: datetime) -> bool:
        """Whether an attempt dispatched no earlier than ``dispatched_at`` started on the same
        partition as ``key``'s item: the workers have read past that item."""
        seen = self._reached.get((topic, work_partition(key, self._partitions)))
        return seen is not None and seen >= dispatched_at
