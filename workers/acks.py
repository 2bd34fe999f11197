"""Acks in offset order: the worker hands Faust only the contiguous prefix of finished events.

Batches finish out of order, and Faust's consumer cannot be trusted to commit only the
contiguous prefix of what was acked: its head-gap guard is skipped while a partition's
committed offset is 0 or unknown (a fresh group, or the first message of a topic) and is
off by one otherwise, so acking offsets 5..9 before 0..4 can commit 10 and a crash then
loses 0..4. ``AckGate`` keeps, per partition, the events received in order and acks an
event only once every earlier one on its partition has finished. Faust then only ever
sees a gap-free run of acks starting at the partition's position, whatever it does with
gaps.

A partition's entries are dropped when it is revoked (Faust re-reads from the committed
offset after a rebalance) or when an offset at or below the last tracked one arrives (a
seek back); a late finish of a dropped event is ignored, since its message is read again.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

TP = tuple[str, int]


@dataclass(slots=True)
class _Entry:
    stream: Any  # faust.StreamT
    event: Any  # faust.EventT
    finished: bool = False


@dataclass(slots=True)
class _Partition:
    entries: OrderedDict[int, _Entry] = field(default_factory=OrderedDict)
    last: int = -1


def _where(event: Any) -> tuple[TP, int]:
    message = event.message
    return (message.topic, message.partition), message.offset


class AckGate:
    """Acks Faust events per partition in offset order, each once it and all before it finished."""

    def __init__(self) -> None:
        self._partitions: dict[TP, _Partition] = {}

    def track(self, stream: Any, event: Any) -> None:
        """Register an event as it is received (Faust delivers a partition in offset order)."""
        tp, offset = _where(event)
        partition = self._partitions.get(tp)
        if partition is None or offset <= partition.last:
            partition = self._partitions[tp] = _Partition()
        partition.entries[offset] = _Entry(stream, event)
        partition.last = offset

    async def finish(self, event: Any) -> None:
        """Mark ``event`` finished; ack it and every finished event after it with no gap."""
        tp, offset = _where(event)
        partition = self._partitions.get(tp)
        entry = partition.entries.get(offset) if partition is not None else None
        if partition is None or entry is None or entry.event is not event:
            return  # dropped by a revoke or a seek back: the message is read again
        entry.finished = True
        ready: list[_Entry] = []
        while partition.entries:
            first = next(iter(partition.entries.values()))
            if not first.finished:
                break
            ready.append(partition.entries.popitem(last=False)[1])
        for done in ready:
            await done.stream.ack(done.event)

    def revoke(self, tps: Any) -> None:
        """Forget revoked partitions (``tps``: Faust TPs or ``(topic, partition)`` pairs)."""
        for tp in tps:
            self._partitions.pop((tp[0], tp[1]), None)

    def pending(self, topic: str, partition: int) -> int:
        """How many events of a partition are tracked and not yet acked."""
        state = self._partitions.get((topic, partition))
        return len(state.entries) if state is not None else 0
