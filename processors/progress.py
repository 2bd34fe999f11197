"""How far the workers have got on each work partition, seen from the attempts that started.

A dispatched job that has not started by its dispatch deadline is either lost (its message
was committed past, or skipped) or still waiting behind a backlog. Workers read a work
partition in offset order, so once an attempt dispatched after the job's own dispatch,
on the same partition, has started, the workers have read past the job's item:
if it has not started by then it will not. Until that is seen, and while older attempts
keep starting on the partition, the job is queued behind a backlog and its re-dispatch
waits (up to ``retry.dispatch_backlog_max_s``). A partition where nothing started for a
whole dispatch timeout is no backlog (its item was lost, or its workers are gone), so the
deadline runs as it is, as it does on a partition this processor has not seen start.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]


def work_partition(key: bytes, partitions: int) -> int:
    """The work-topic partition a message keyed ``key`` goes to (the producer's default)."""
    return int(murmur2(key) & 0x7FFFFFFF) % partitions


@dataclass(slots=True)
class _Partition:
    reached: datetime  # the latest dispatched_at of an attempt that started here
    active_at: datetime  # when this processor last saw an attempt start here


class WorkProgress:
    """Per (work topic, partition): how far started attempts reach, and when one last started."""

    def __init__(self, partitions: int) -> None:
        self._partitions = partitions
        self._seen: dict[tuple[str, int], _Partition] = {}

    def started(self, topic: str, key: bytes, dispatched_at: datetime, *, now: datetime) -> None:
        """An attempt dispatched at ``dispatched_at`` (keyed ``key``) started on ``topic``."""
        where = (topic, work_partition(key, self._partitions))
        seen = self._seen.get(where)
        if seen is None:
            self._seen[where] = _Partition(reached=dispatched_at, active_at=now)
            return
        seen.reached = max(seen.reached, dispatched_at)
        seen.active_at = max(seen.active_at, now)

    def queued_behind(self, topic: str, key: bytes, dispatched_at: datetime, *, now: datetime,
                      window_s: float) -> bool:
        """Whether ``key``'s item, dispatched at ``dispatched_at``, is still queued behind a
        backlog: no attempt dispatched after it has started on its partition, while
        older ones started within the last ``window_s`` (the workers are moving, not there yet).

        A partition with no start for ``window_s`` is not a backlog: its workers are gone or
        its item was lost; the dispatch deadline then runs as it is.
        """
        seen = self._seen.get((topic, work_partition(key, self._partitions)))
        if seen is None or seen.reached > dispatched_at:
            return False
        return (now - seen.active_at).total_seconds() < window_s
