"""The pure batching policy: size, token and byte budgets, time windows, no Kafka."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from brigade.settings import LaneSettings
from workers.batching import Batch, Batcher, BatchPolicy, estimate_tokens


def _policy(**kw: object) -> BatchPolicy:
    base: dict[str, object] = {"max_size": 4, "max_delay_s": 0.010, "token_budget": 100}
    base.update(kw)
    return BatchPolicy(**base)  # type: ignore[arg-type]


def test_closes_at_max_size() -> None:
    batcher: Batcher[int] = Batcher(_policy(max_size=3))
    assert batcher.add(1, tokens=1, size_bytes=1, now=0.0) == []
    assert batcher.add(2, tokens=1, size_bytes=1, now=0.001) == []
    closed = batcher.add(3, tokens=1, size_bytes=1, now=0.002)
    assert [b.items for b in closed] == [(1, 2, 3)]
    assert closed[0].reason == "size"
    assert len(batcher) == 0 and batcher.deadline() is None


def test_token_budget_closes_before_overflowing() -> None:
    batcher: Batcher[str] = Batcher(_policy(max_size=10, token_budget=10))
    batcher.add("a", tokens=6, size_bytes=1, now=0.0)
    closed = batcher.add("b", tokens=6, size_bytes=1, now=0.0)
    assert [(b.items, b.reason, b.tokens) for b in closed] == [(("a",), "tokens", 6)]
    assert len(batcher) == 1


def test_oversized_item_runs_alone() -> None:
    batcher: Batcher[str] = Batcher(_policy(token_budget=10))
    batcher.add("small", tokens=2, size_bytes=1, now=0.0)
    closed = batcher.add("huge", tokens=50, size_bytes=1, now=0.0)
    assert [b.items for b in closed] == [("small",), ("huge",)]
    assert len(batcher) == 0


def test_byte_budget() -> None:
    batcher: Batcher[str] = Batcher(_policy(max_size=10, byte_budget=100))
    batcher.add("a", tokens=1, size_bytes=60, now=0.0)
    closed = batcher.add("b", tokens=1, size_bytes=60, now=0.0)
    assert [(b.items, b.reason) for b in closed] == [(("a",), "bytes")]


def test_window_is_measured_from_the_oldest_item() -> None:
    batcher: Batcher[int] = Batcher(_policy(max_delay_s=0.010))
    batcher.add(1, tokens=1, size_bytes=1, now=1.000)
    batcher.add(2, tokens=1, size_bytes=1, now=1.008)
    assert batcher.deadline() == pytest.approx(1.010)
    assert batcher.due(1.009) == []
    closed = batcher.due(1.010)
    assert [(b.items, b.reason) for b in closed] == [((1, 2), "time")]
    assert batcher.due(5.0) == []


def test_drain_returns_the_open_batch() -> None:
    batcher: Batcher[int] = Batcher(_policy())
    assert batcher.drain() == []
    batcher.add(7, tokens=1, size_bytes=1, now=0.0)
    assert [b.reason for b in batcher.drain()] == ["drain"]


def test_from_lane_settings() -> None:
    policy = BatchPolicy.from_lane(LaneSettings(max_batch_size=16, max_delay_ms=5, token_budget=999))
    assert (policy.max_size, policy.max_delay_s, policy.token_budget) == (16, 0.005, 999)


def test_rejects_bad_policy() -> None:
    with pytest.raises(ValueError, match="max_size"):
        BatchPolicy(max_size=0, max_delay_s=0.0, token_budget=1)


def test_estimate_tokens() -> None:
    assert estimate_tokens('"' + "x" * 40 + '"') == 10
    assert estimate_tokens('{"messages": [{"role": "user", "content": "hello world!"}]}') == 4
    assert estimate_tokens(None, payload_size=400) == 100
    assert estimate_tokens("not json at all") >= 1


arrivals = st.lists(
    st.tuples(st.integers(1, 40), st.integers(1, 300), st.floats(0.0, 0.02)), max_size=60
)


@settings(max_examples=200, deadline=None)
@given(
    arrivals,
    st.integers(1, 8),
    st.integers(1, 120),
    st.sampled_from([None, 200, 1000]),
    st.floats(0.0, 0.05),
)
def test_policy_properties(
    items: list[tuple[int, int, float]],
    max_size: int,
    budget: int,
    byte_budget: int | None,
    max_delay: float,
) -> None:
    """Every item lands in exactly one batch, in order, and no batch breaks a limit."""
    policy = BatchPolicy(
        max_size=max_size, max_delay_s=max_delay, token_budget=budget, byte_budget=byte_budget
    )
    batcher: Batcher[int] = Batcher(policy)
    closed: list[tuple[Batch[int], float]] = []
    now = 0.0
    arrived: dict[int, float] = {}
    for index, (tokens, size, gap) in enumerate(items):
        now += gap
        # A driver polls due() before each arrival, as the agent's flush loop does.
        closed += [(b, now) for b in batcher.due(now)]
        arrived[index] = now
        closed += [(b, now) for b in batcher.add(index, tokens=tokens, size_bytes=size, now=now)]
    closed += [(b, now) for b in batcher.drain()]
    flat = [i for b, _ in closed for i in b.items]
    assert flat == list(range(len(items)))
    for batch, closed_at in closed:
        assert 1 <= len(batch) <= max_size
        costs = [items[i] for i in batch.items]
        if len(batch) > 1:
            assert sum(c[0] for c in costs) <= budget
            if byte_budget is not None:
                assert sum(c[1] for c in costs) <= byte_budget
        if batch.reason == "time":
            # Closed by its window: the oldest item waited at least max delay...
            assert closed_at - arrived[batch.items[0]] >= max_delay - 1e-9
        # ...and no item's wait can exceed the window of the batch's oldest item, unless
        # the driver never polled (drain at the end is that case).
        if batch.reason != "drain":
            oldest = arrived[batch.items[0]]
            assert batch.opened_at == oldest
