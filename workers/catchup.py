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
    end: int  # the job-events end offset at assignment: fold offsets up to end - 1
    reached: asyncio.Event = field(default_factory=asyncio.Event)


class CatchUp:
    """Per-partition barrier between the job-events agent and the work agents."""

    def __init__(self, *, max_wait_s: float = 60.0) -> None:
        self._targets: dict[int, _Target] = {}
        self._max_wait_s = max_wait_s

    def assign(self, partition: int, *, committed: int, end: int) -> None:
        """A job-events partition was assigned: its table is current once ``end`` is folded."""
        target = _Target(end)
        if committed >= end:
            target.reached.set()  # nothing to fold
        self._targets[partition] = target

    def revoke(self, partition: int) -> None:
        """Forget a revoked partition (it gets a new target when assigned again)."""
        target = self._targets.pop(partition, None)
        if target is not None:
            target.reached.set()

    def folded(self, partition: int, offset: int) -> None:
        """The job-events agent has folded ``offset`` of ``partition`` into the table."""
        target = self._targets.get(partition)
        if target is not None and offset + 1 >= target.end:
            target.reached.set()

    async def wait(self, partition: int) -> None:
        """Return once ``partition``'s table is current (or after ``max_wait_s``)."""
        target = self._targets.get(partition)
        if target is None or target.reached.is_set():
            return
        try:
            await asyncio.wait_for(target.reached.wait(), self._max_wait_s)
        except TimeoutError:
            log.warning("job-state of partition %d not caught up after %.0f s; running its work anyway",
                        partition, self._max_wait_s)
            target.reached.set()
