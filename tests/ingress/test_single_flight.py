"""SingleFlight: one holder per key, waiters served in order, cancellation never strands a key."""

from __future__ import annotations

import asyncio

from ingress.idempotency import SingleFlight


async def _holding(
    flights: SingleFlight, keys: list[str], log: list[str], name: str, release: asyncio.Event
) -> None:
    async with flights.hold_all(keys):
        log.append(name)
        await release.wait()


async def _settle() -> None:
    for _ in range(5):  # let every ready task run up to its next wait
        await asyncio.sleep(0)


async def test_waiters_get_the_key_in_arrival_order_and_the_entry_is_dropped() -> None:
    flights, log = SingleFlight(), []
    events = {name: asyncio.Event() for name in "abc"}
    tasks = [asyncio.create_task(_holding(flights, ["k"], log, n, events[n])) for n in "abc"]
    await _settle()
    assert log == ["a"]
    for name, expected in (("a", ["a", "b"]), ("b", ["a", "b", "c"])):
        events[name].set()
        await _settle()
        assert log == expected
    events["c"].set()
    await asyncio.gather(*tasks)
    assert flights._locks == {}


async def test_a_cancelled_waiter_does_not_keep_the_key_from_the_next() -> None:
    flights, log = SingleFlight(), []
    events = {name: asyncio.Event() for name in "abc"}
    a = asyncio.create_task(_holding(flights, ["k", "m"], log, "a", events["a"]))
    await _settle()
    b = asyncio.create_task(_holding(flights, ["k"], log, "b", events["b"]))
    c = asyncio.create_task(_holding(flights, ["k"], log, "c", events["c"]))
    await _settle()
    b.cancel()
    events["a"].set()
    events["c"].set()
    await asyncio.wait_for(asyncio.gather(a, c), 10)
    assert log == ["a", "c"] and b.cancelled()
    assert flights._locks == {}


async def test_a_waiter_cancelled_as_it_is_handed_the_key_passes_it_on() -> None:
    flights, log = SingleFlight(), []
    events = {name: asyncio.Event() for name in "bc"}
    waiting: list[asyncio.Task[None]] = []

    async def first() -> None:
        async with flights.hold_all(["k"]):
            log.append("a")
            await _settle()
        waiting[0].cancel()  # b has just been handed the key and has not run yet

    a = asyncio.create_task(first())
    await asyncio.sleep(0)
    waiting.append(asyncio.create_task(_holding(flights, ["k"], log, "b", events["b"])))
    c = asyncio.create_task(_holding(flights, ["k"], log, "c", events["c"]))
    events["c"].set()
    await asyncio.wait_for(asyncio.gather(a, c), 10)
    assert log == ["a", "c"] and waiting[0].cancelled()
    assert flights._locks == {}


async def test_a_batch_cancelled_while_waiting_releases_the_keys_it_already_took() -> None:
    flights, log = SingleFlight(), []
    events = {name: asyncio.Event() for name in "ab"}
    a = asyncio.create_task(_holding(flights, ["m"], log, "a", events["a"]))
    await _settle()
    b = asyncio.create_task(_holding(flights, ["k", "m"], log, "b", events["b"]))  # takes k, waits for m
    await _settle()
    assert "k" in flights._locks
    b.cancel()
    await _settle()
    assert "k" not in flights._locks
    events["a"].set()
    await a
    assert flights._locks == {} and log == ["a"]
