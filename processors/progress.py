"""How far the workers have got on each work partition.

A dispatched job that has not started by its dispatch deadline is either lost (its item
was committed past, or skipped) or still waiting behind a backlog. Re-dispatching helps
only in the first case: the new item goes to the same partition (same key), behind the
same backlog, and each needless one is another model call and more backlog.

The exact answer is the workers' committed offsets (``WorkerCommits``). Workers commit only
the contiguous prefix of items they are done with, so an item at or after a group's
committed offset is still ahead of that group and will be read, whatever crashes, by
whichever member holds the partition next; only once every group reading the topic has
committed past the item without its attempt starting is it lost. The processor knows
each item's offset from the broker's acknowledgement of its dispatch.

A processor that restarted no longer knows the offsets of items dispatched before; for
those it estimates from the attempts that start (``WorkProgress``): once an attempt
dispatched after the job's own, on the same partition, has started, the workers have
probably read past the job's item. A partition where nothing started for a whole
dispatch timeout is no backlog (its item was lost, or its workers are gone), so the
deadline runs as it is. Every hold ends at ``retry.dispatch_backlog_max_s``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from aiokafka.partitioner import murmur2  # type: ignore[import-untyped]

from brigade.errors import KafkaError
from brigade.kafka.lag import Offsets

log = logging.getLogger(__name__)


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


@dataclass(frozen=True, slots=True)
class DispatchedItem:
    """Where the broker put a job's latest work item."""

    partition: int
    offset: int
    dispatched_at: datetime


class WorkerCommits:
    """The worker groups' committed offsets, read from the broker at most every ``ttl_s``.

    ``read`` returns one ``Offsets`` per workers' consumer group (it blocks: it runs in a
    thread). When it fails, nothing is known until the next successful read.
    """

    def __init__(self, read: Callable[[], list[Offsets]], *, ttl_s: float) -> None:
        self._read = read
        self._ttl_s = ttl_s
        self._read_at = float("-inf")
        self._groups: list[Offsets] | None = None

    async def refresh(self, now: float) -> None:
        """Read the groups' offsets again if the last read is older than ``ttl_s``."""
        if now - self._read_at < self._ttl_s:
            return
        self._read_at = now
        try:
            self._groups = await asyncio.to_thread(self._read)
        except KafkaError as exc:
            log.warning("workers' committed offsets unknown: %s", exc)
            self._groups = None

    def passed(self, topic: str, partition: int, offset: int) -> bool | None:
        """Whether every group reading ``topic`` has committed past ``offset`` on ``partition``
        (``None``: the offsets could not be read).

        No group with a commit on the topic means no worker has finished anything there
        yet: the item is still ahead of them.
        """
        if self._groups is None:
            return None
        readers = [group for group in self._groups if any(t == topic for t, _ in group)]
        return bool(readers) and all(group.get((topic, partition), -1) > offset for group in readers)
