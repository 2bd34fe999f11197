"""Batches of a Faust stream's events that close as soon as no more input is buffered.

Faust's ``Stream.take_events(max_, within)`` hands over a batch only when it holds ``max_``
events or when its timer fires, so an input arriving alone at an idle processor waited for
the next tick of the ``within`` window (up to 5 ms at the processors' setting). ``take_ready``
keeps the same contract (a batch of at most ``max_`` events, acked only after the loop body
has run, the next batch held back meanwhile) and adds one rule: a batch also closes when the
stream's channel queue is empty after an event is added, i.e. everything the consumer has
fetched so far is in the batch. Under load the queue refills while a batch is decided, so
batches still grow with the arrival rate; ``within`` stays as the upper bound when input
never stops, counted from the batch's first event. An idle stream sets no timer at all:
``take_events`` (and this module before) woke every ``within`` to find nothing, which at
5 ms cost an idle processor 8 % of a core (``bench.bench_stack --only idle``).

It drives the same Faust stream machinery ``take_events`` does (a passive processor that
fills the buffer, the stream's own ``ack``, its private ``_enable_passive``), so a Faust
upgrade that changes ``take_events`` should be read against this module.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any


class _Buffer:
    """The events of the open batch, filled by a stream processor, emptied by the reader."""

    def __init__(self, stream: Any, max_: int) -> None:
        self.stream = stream
        self.max = max_
        self.events: list[Any] = []
        self.arrived = asyncio.Event()  # the open batch has its first event
        self.ready = asyncio.Event()
        self.drained = asyncio.Event()
        self.consuming: asyncio.Future[None] | None = None

    async def add(self, value: Any) -> Any:
        try:
            await self._wait_while_consumed()
            event = self.stream.current_event
            if event is None:
                raise RuntimeError("take_ready found no current event for a value")
            self.events.append(event)
            self.arrived.set()
            full = len(self.events) >= self.max
            if full or self.stream.channel.empty():
                self.ready.set()
            if full:
                # A full buffer blocks the stream until the reader took it: never max_ + 1.
                self.drained.clear()
                await self.stream.wait(self.drained)
        except Exception as exc:  # noqa: BLE001 - handed to the stream, as take_events does
            # A failure here must stop the agent, not drop the event.
            await self.stream.crash(exc)
        return value

    async def _wait_while_consumed(self) -> None:
        if self.consuming is not None:
            try:
                await self.consuming
            finally:
                self.consuming = None

    def take(self) -> list[Any]:
        """The open batch's events; the stream is held back until ``release``."""
        events, self.events = self.events, []
        self.consuming = asyncio.get_running_loop().create_future()
        return events

    async def release(self, events: list[Any]) -> None:
        """Ack ``events`` (a batch the reader finished) and let the stream fill the next one."""
        # Only the events handed over are acked: one that reached the buffer meanwhile
        # (possible in the instant between two batches) waits for the next batch.
        for event in events:
            await self.stream.ack(event)
        if self.consuming is not None and not self.consuming.done():
            self.consuming.set_result(None)
        if not self.events:
            self.arrived.clear()
            self.ready.clear()
        self.drained.set()


async def take_ready(stream: Any, max_: int, *, within: float) -> AsyncIterator[list[Any]]:
    """Yield lists of at most ``max_`` events of ``stream``, closed when full, when nothing
    more is buffered, or ``within`` seconds after the batch's first event at the latest.

    Events are acked after the loop body that received them returns (or raises), as
    ``Stream.take_events`` does; the stream's own acks are turned off.
    """
    buffer = _Buffer(stream, max_)
    stream.enable_acks = False
    stream.add_processor(buffer.add)
    stream._enable_passive(aiter(stream.channel))
    while not stream.should_stop:
        await stream.wait_for_stopped(buffer.arrived)
        await stream.wait_for_stopped(buffer.ready, timeout=within)
        if not buffer.events:  # stopping
            buffer.arrived.clear()
            buffer.ready.clear()
            continue
        events = buffer.take()
        try:
            yield events
        finally:
            await buffer.release(events)
