"""AckGate: Faust only ever sees a gap-free run of acks per partition."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from hypothesis import given
from hypothesis import strategies as st

from workers.acks import AckGate


@dataclass(frozen=True)
class Message:
    topic: str
    partition: int
    offset: int


@dataclass(eq=False)
class Event:
    message: Message


@dataclass
class Stream:
    acked: list[int] = field(default_factory=list)

    async def ack(self, event: Event) -> bool:
        self.acked.append(event.message.offset)
        return True


def events(n: int, start: int = 0) -> list[Event]:
    return [Event(Message("t", 0, start + i)) for i in range(n)]


@given(st.permutations(list(range(12))), st.integers(min_value=0, max_value=12))
def test_acks_are_the_contiguous_prefix_of_finished_events(order: list[int], finished: int) -> None:
    gate, stream, evs = AckGate(), Stream(), events(12)
    for event in evs:
        gate.track(stream, event)
    done = order[:finished]
    for i in done:
        asyncio.run(gate.finish(evs[i]))
    prefix = 0
    while prefix in done:
        prefix += 1
    assert stream.acked == list(range(prefix))
    assert gate.pending("t", 0) == 12 - prefix


def test_a_seek_back_or_revoke_drops_stale_events() -> None:
    gate, stream = AckGate(), Stream()
    old = events(3)
    for event in old:
        gate.track(stream, event)
    again = events(3)  # redelivered from offset 0 after a rebalance
    for event in again:
        gate.track(stream, event)
    asyncio.run(gate.finish(old[0]))  # a late finish of the stale copy acks nothing
    assert stream.acked == []
    asyncio.run(gate.finish(again[0]))
    assert stream.acked == [0]
    gate.revoke([("t", 0)])
    asyncio.run(gate.finish(again[1]))
    assert stream.acked == [0] and gate.pending("t", 0) == 0
