"""Routing, backoff, tiers and the table's state format: pure, no broker."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from processors.retry import backoff, plan_retry, tier_for
from processors.routing import NoRoute, Router, route
from processors.state import decode_job, encode_job
from testkit.jobs import T0, outcome, pure_settings, spec, submit
from tests.processors.test_lifecycle import run

TIERS = (1.0, 5.0, 30.0, 120.0, 600.0)


@given(st.floats(min_value=0, max_value=5000, allow_nan=False))
def test_tier_is_the_smallest_not_shorter_than_the_delay(delay: float) -> None:
    tier = tier_for(delay, TIERS)
    if delay <= 600:
        assert tier >= delay and all(t < delay for t in TIERS if t < tier)
    else:
        assert tier == 600.0


@given(st.integers(min_value=1, max_value=80), st.integers(min_value=0, max_value=2**32))
def test_full_jitter_backoff_stays_within_its_ceiling(attempt: int, seed: int) -> None:
    delay = backoff(attempt, base=0.5, cap=60.0, rng=random.Random(seed))
    assert 0.0 <= delay <= min(60.0, 0.5 * 2 ** (attempt - 1))


def test_retry_after_is_honoured_and_capped() -> None:
    policy = pure_settings().retry
    plan = plan_retry(job_id="j", failed_attempt=1, now=T0, retry_after_ms=12_000, policy=policy)
    assert (plan.delay_s, plan.tier_s) == (12.0, 30.0)
    capped = plan_retry(job_id="j", failed_attempt=1, now=T0, retry_after_ms=10**9, policy=policy)
    assert capped.delay_s == policy.retry_after_cap_s


def test_routes_first_rule_then_model_hint_then_default() -> None:
    settings = pure_settings()
    assert route(spec(long_context=True), settings).pool == "big"
    assert route(spec(model_hint="big-model"), settings).pool == "big"
    assert route(spec(model_hint="small"), settings).pool == "small"
    assert route(spec(model_hint="unknown"), settings).pool == "small"
    assert route(spec(priority="interactive"), settings).lane == "interactive"
    assert Router(settings).fallback("big", "interactive") is not None
    assert Router(settings).fallback("small", "interactive") is None


def test_unknown_model_hint_without_default_names_the_hint() -> None:
    with pytest.raises(NoRoute, match="gpt-x"):
        route(spec(model_hint="gpt-x"), pure_settings(default_pool=None, routes=[]))


def test_table_state_round_trips_exactly() -> None:
    s = spec(deadline=T0, metadata={"a": "b"})
    state, _, _ = run([(submit(s), 0), (outcome(s, "started"), 1),
                       (outcome(s, "failed", error_class="transient", error="x"), 2)])
    assert state is not None and state.errors
    assert decode_job(encode_job(state)) == state
