"""Hold a newly assigned partition's work until the job-state table has caught up.

After a rebalance or a restart the work partitions are read again from their committed
offsets, and some of those items may have finished already (acks are a contiguous prefix,
so a finished item after an unfinished one is redelivered). The skip check recognises
them only once the job-state table has folded the job's terminal event, and the two
agents run independently: without a barrier a redelivered item could reach the model
before its ``JobSucceeded`` is folded. ``CatchUp`` records, per job-events partition, the
log's end offset at assignment; work items of the co-partitioned work partition wait until
the job-events agent has folded up to it (or ``max_wait_s`` passes: a duplicate model call
is harmless, a stuck partition is not).
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field

log = logging.getLogger(__name__)


@dataclass(slots=True)
class _Target:
    end: int | None = None  # the job-events end offset at assignment (None: not known yet)
    folded: int = -1  # the last offset folded since the assignment
    reached: asyncio.Event = field(default_factory=asyncio.Event)

    def check(self) -> None:
        if self.end is not None and self.folded + 1 >= self.end:
            self.reached.set()


class CatchUp:
    """Per-partition barrier between the job-events agent and the work agents.

    A partition without a target (never assigned, or revoked) waits too, until
    ``assign`` gives it one: work can arrive before the end offsets are known.
    """

    def __init__(self, *, max_wait_s: float = 20.0) -> None:
        self._targets: dict[int, _Target] = {}
        self._max_wait_s = max_wait_s

    def pending(self, partitions: list[int]) -> None:
        """Partitions were just assigned: hold their work until ``assign`` sets their targets."""
        for partition in partitions:
            target = self._targets.get(partition)
            if target is None or target.reached.is_set():
                self._targets[partition] = _Target()
            else:  # keep the event work is already waiting on; only the target is new
                target.end, target.folded = None, -1

    def assign(self, partition: int, *, committed: int, end: int) -> None:
        """A job-events partition's table is current once ``end`` is folded (or at once when
        the group's committed offset is already there)."""
        target = self._targets.setdefault(partition, _Target())
        target.end = end
        if committed >= end:
            target.reached.set()
        target.check()
        log.info("job-state catch-up: partition %d from %d to %d%s", partition, committed, end,
                 " (current)" if target.reached.is_set() else "")

    def release(self) -> None:
        """Let every waiting partition run (the targets could not be computed)."""
        for target in self._targets.values():
            target.reached.set()

    def revoke(self, partition: int) -> None:
        """Forget a revoked partition: it waits for a new target when assigned again."""
        target = self._targets.pop(partition, None)
        if target is not None:
            target.reached.set()

    def folded(self, partition: int, offset: int) -> None:
        """The job-events agent has folded ``offset`` of ``partition`` into the table."""
        target = self._targets.get(partition)
        if target is not None:
            target.folded = max(target.folded, offset)
            target.check()

    async def wait(self, partition: int) -> None:
        """Return once ``partition``'s table is current (or after ``max_wait_s``)."""
        target = self._targets.setdefault(partition, _Target())
        if target.reached.is_set():
            return
        try:
            await asyncio.wait_for(target.reached.wait(), self._max_wait_s)
        except TimeoutError:
            log.warning("job-state of partition %d not caught up after %.0f s; running its work anyway",
                        partition, self._max_wait_s)
            target.reached.set()
