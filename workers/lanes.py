"""The async driver around the pure ``Batcher``: one per pool lane.

``submit`` hands an item to the batcher (waiting while too many items are in flight, which
is the back-pressure that eventually pauses the Kafka fetch); a flush loop sleeps until the
open batch's deadline and closes it; a lane whose policy says ``close_when_idle`` closes
the batch at once when none of its batches is running or waiting; every closed batch runs
as its own task once it gets one of the pool's concurrency slots. The ``execute`` callback
does the work and the acks.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from workers.batching import Batch, Batcher, BatchPolicy

T = TypeVar("T")
Execute = Callable[[Batch[T]], Awaitable[None]]
log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Slots:
    """Concurrency of one pool: all lanes share ``pool``; the batch lane is capped below it.

    Capping the batch lane at ``max_concurrency - 1`` keeps one model call free for
    interactive work, so a bulk backfill cannot starve interactive latency.
    """

    pool: asyncio.Semaphore
    batch: asyncio.Semaphore

    @classmethod
    def for_concurrency(cls, max_concurrency: int) -> Slots:
        """Slots for a pool allowed ``max_concurrency`` concurrent model calls."""
        return cls(asyncio.Semaphore(max_concurrency), asyncio.Semaphore(max(1, max_concurrency - 1)))


class LaneRunner(Generic[T]):
    """Batches items of one lane and runs closed batches concurrently, bounded by slots."""

    def __init__(
        self,
        *,
        policy: BatchPolicy,
        execute: Execute[T],
        pool_slots: asyncio.Semaphore,
        lane_slots: asyncio.Semaphore | None = None,
        max_in_flight: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.batcher: Batcher[T] = Batcher(policy)
        self._execute = execute
        self._pool_slots = pool_slots
        self._lane_slots = lane_slots
        self._max_in_flight = max_in_flight
        self._clock = clock
        self._in_flight = 0
        self._capacity = asyncio.Condition()
        self._wake = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()
        self._flusher: asyncio.Task[None] | None = None

    @property
    def in_flight(self) -> int:
        """Items submitted and not yet finished."""
        return self._in_flight

    def start(self) -> None:
        """Start the flush loop (call from the running event loop)."""
        if self._flusher is None:
            self._flusher = asyncio.create_task(self._flush_loop())

    async def submit(self, item: T, *, tokens: int, size_bytes: int) -> None:
        """Add one item; waits while ``max_in_flight`` items are already in flight."""
        async with self._capacity:
            await self._capacity.wait_for(lambda: self._in_flight < self._max_in_flight)
            self._in_flight += 1
        for batch in self.batcher.add(item, tokens=tokens, size_bytes=size_bytes, now=self._clock()):
            self._spawn(batch)
        if self.batcher.policy.close_when_idle and not self._tasks:
            # Nothing of this lane is running or waiting for a slot, so holding the item
            # for the window would only add the window to its latency; items that arrive
            # while this batch runs still gather for the window (or until full).
            for batch in self.batcher.drain("idle"):
                self._spawn(batch)
        self._wake.set()

    async def stop(self, *, drain: bool = True) -> None:
        """Stop the flush loop; run what is open (``drain``) and wait for running batches."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
            self._flusher = None
        if drain:
            for batch in self.batcher.drain():
                self._spawn(batch)
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _flush_loop(self) -> None:
        while True:
            deadline = self.batcher.deadline()
            timeout = None if deadline is None else max(0.0, deadline - self._clock())
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)
            for batch in self.batcher.due(self._clock()):
                self._spawn(batch)

    def _spawn(self, batch: Batch[T]) -> None:
        task = asyncio.create_task(self._run(batch))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run(self, batch: Batch[T]) -> None:
        try:
            async with contextlib.AsyncExitStack() as stack:
                if self._lane_slots is not None:
                    await stack.enter_async_context(self._lane_slots)
                await stack.enter_async_context(self._pool_slots)
                await self._execute(batch)
        except Exception:
            # The batch's messages stay unacked, so Kafka redelivers them after a restart.
            log.exception("batch of %d items failed; its messages stay unacked", len(batch))
        finally:
            async with self._capacity:
                self._in_flight -= len(batch)
                self._capacity.notify_all()
