"""The lane runner drives the batcher in real time: windows, size, back-pressure."""

from __future__ import annotations

import asyncio
import time

from workers.batching import Batch, BatchPolicy
from workers.lanes import LaneRunner, Slots


async def test_interactive_item_waits_at_most_the_window() -> None:
    done: list[tuple[float, Batch[int]]] = []
    ran = asyncio.Event()

    async def execute(batch: Batch[int]) -> None:
        done.append((time.monotonic(), batch))
        ran.set()

    slots = Slots.for_concurrency(2)
    runner: LaneRunner[int] = LaneRunner(policy=BatchPolicy(max_size=8, max_delay_s=0.02, token_budget=100),
                                         execute=execute, pool_slots=slots.pool, max_in_flight=100)
    runner.start()
    began = time.monotonic()
    await runner.submit(1, tokens=1, size_bytes=1)
    await runner.submit(2, tokens=1, size_bytes=1)
    await asyncio.wait_for(ran.wait(), 5)
    await runner.stop()
    assert [b.items for _, b in done] == [(1, 2)] and done[0][1].reason == "time"
    # The window is 20 ms; allow generous scheduling slack on a shared 2-core machine.
    assert 0.015 <= done[0][0] - began < 0.5


async def test_full_batches_close_immediately_and_backpressure_holds() -> None:
    release = asyncio.Event()
    batches: list[Batch[int]] = []

    async def execute(batch: Batch[int]) -> None:
        batches.append(batch)
        await release.wait()

    slots = Slots.for_concurrency(1)
    runner: LaneRunner[int] = LaneRunner(policy=BatchPolicy(max_size=2, max_delay_s=10, token_budget=100),
                                         execute=execute, pool_slots=slots.pool,
                                         lane_slots=slots.batch, max_in_flight=4)
    runner.start()
    for i in range(4):
        await runner.submit(i, tokens=1, size_bytes=1)
    blocked = asyncio.create_task(runner.submit(4, tokens=1, size_bytes=1))
    await asyncio.sleep(0.05)
    assert not blocked.done(), "a fifth item must wait while four are in flight"
    assert [b.items for b in batches] == [(0, 1)], "one slot: the second batch waits its turn"
    release.set()
    await asyncio.wait_for(blocked, 5)
    await runner.stop()
    assert [b.items for b in batches] == [(0, 1), (2, 3), (4,)]
    assert runner.in_flight == 0


async def test_idle_lane_closes_at_once_and_gathers_while_busy() -> None:
    # A window far longer than the test: only the idle rule (or stop's drain) can close a batch.
    release = asyncio.Event()
    batches: list[Batch[int]] = []
    first = asyncio.Event()

    async def execute(batch: Batch[int]) -> None:
        batches.append(batch)
        first.set()
        await release.wait()

    slots = Slots.for_concurrency(2)
    policy = BatchPolicy(max_size=8, max_delay_s=3600, token_budget=100, close_when_idle=True)
    runner: LaneRunner[int] = LaneRunner(policy=policy, execute=execute, pool_slots=slots.pool,
                                         max_in_flight=100)
    runner.start()
    # Given an idle lane, when one item arrives, then it runs alone at once
    await runner.submit(1, tokens=1, size_bytes=1)
    await asyncio.wait_for(first.wait(), 30)
    # When more arrive while that batch runs, then they gather instead of running one by one
    await runner.submit(2, tokens=1, size_bytes=1)
    await runner.submit(3, tokens=1, size_bytes=1)
    assert len(runner.batcher) == 2 and [b.items for b in batches] == [(1,)]
    release.set()
    await runner.stop()
    assert [(b.items, b.reason) for b in batches] == [((1,), "idle"), ((2, 3), "drain")]


async def test_lane_without_idle_close_waits_for_its_window() -> None:
    batches: list[Batch[int]] = []

    async def execute(batch: Batch[int]) -> None:
        batches.append(batch)

    slots = Slots.for_concurrency(2)
    runner: LaneRunner[int] = LaneRunner(policy=BatchPolicy(max_size=8, max_delay_s=3600, token_budget=100),
                                         execute=execute, pool_slots=slots.pool, max_in_flight=100)
    runner.start()
    await runner.submit(1, tokens=1, size_bytes=1)
    await asyncio.sleep(0)
    assert len(runner.batcher) == 1 and batches == []
    await runner.stop()
    assert [(b.items, b.reason) for b in batches] == [((1,), "drain")]
