"""Pure rules: token buckets, callback policy, payload hashing and job ids."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from brigade.settings import Settings
from ingress.callbacks import check_callback_url
from ingress.commands import JobValidationError, parse_request, prepare
from ingress.idempotency import SingleFlight
from ingress.ratelimit import TokenBucket


@given(
    rate=st.floats(1, 1000),
    costs=st.lists(st.integers(1, 50), min_size=1, max_size=200),
    step=st.floats(0, 0.05),
)
def test_a_bucket_never_admits_more_than_capacity_plus_rate_times_time(
    rate: float, costs: list[int], step: float
) -> None:
    capacity = rate * 2
    bucket = TokenBucket(rate=rate, capacity=capacity, tokens=capacity, stamp=0.0)
    admitted = 0.0
    now = 0.0
    for cost in costs:
        now += step
        if bucket.take(cost, now) == 0:
            admitted += cost
    # Debt lets one request overshoot by at most its own cost beyond the bucket.
    assert admitted <= capacity + rate * now + max(costs) + 1e-6


def test_a_refused_take_says_how_long_to_wait() -> None:
    bucket = TokenBucket(rate=10, capacity=10, tokens=0, stamp=0.0)
    wait = bucket.take(5, 0.0)
    assert wait == pytest.approx(0.5)
    assert bucket.take(5, wait) == 0


@pytest.mark.parametrize(
    ("url", "allowed"),
    [
        ("https://hooks.example.com/x", True),
        ("http://93.184.216.34/x", True),
        ("http://127.0.0.1/x", False),
        ("http://[fe80::1]/x", False),
        ("http://192.168.0.10/x", False),
        ("http://printer/x", False),
        ("file:///etc/passwd", False),
        ("https://a:b@example.com/", False),
        ("http://[not-an-ip/x", False),
    ],
)
def test_callback_policy(url: str, allowed: bool) -> None:
    assert (check_callback_url(url, allow_private=False) is None) is allowed


def test_private_callbacks_pass_when_the_tenant_allows_them() -> None:
    assert check_callback_url("http://127.0.0.1:9/cb", allow_private=True) is None
    assert check_callback_url("gopher://127.0.0.1/", allow_private=True) is not None


def test_payload_hash_ignores_key_and_defaults_but_not_fields() -> None:
    settings = Settings()
    now = datetime(2030, 1, 1, tzinfo=UTC)

    def job(**fields: object) -> str:
        return prepare(
            parse_request({"input": "x", **fields}), settings=settings, tenant_id="t", now=now
        ).payload_hash

    base = job()
    assert job(maxAttempts=settings.retry.default_max_attempts) == base
    assert job(idempotencyKey="k") == base
    assert job(priority="interactive") != base
    assert job(metadata={"a": "b"}) != base
    deadline = now + timedelta(hours=1)
    assert job(deadline=deadline.isoformat()) == job(deadline=deadline.astimezone(UTC).isoformat())


def test_job_ids_depend_on_tenant_and_key() -> None:
    settings = Settings()
    request = parse_request({"input": "x"})
    a = prepare(request, settings=settings, tenant_id="a", idempotency_key="k").job_id
    b = prepare(request, settings=settings, tenant_id="b", idempotency_key="k").job_id
    a2 = prepare(
        parse_request({"input": "other"}), settings=settings, tenant_id="a", idempotency_key="k"
    ).job_id
    assert a != b and a == a2


def test_exactly_one_of_input_and_payload_ref() -> None:
    with pytest.raises(JobValidationError):
        parse_request({"input": "x", "payloadRef": "s3://b/k"})
    with pytest.raises(JobValidationError):
        parse_request({})
    assert parse_request({"payloadRef": "s3://b/k"}).payloadRef == "s3://b/k"


async def test_batches_with_overlapping_ids_take_turns_without_deadlock() -> None:
    flights = SingleFlight()
    inside: list[str] = []
    overlap: list[bool] = []

    async def batch(name: str, ids: list[str]) -> None:
        async with flights.hold_all(ids):
            overlap.append(bool(inside))
            inside.append(name)
            await asyncio.sleep(0.01)
            inside.remove(name)

    # Opposite orders would deadlock if each batch locked its ids in its own order.
    ids = [f"job-{i}" for i in range(20)]
    await asyncio.wait_for(asyncio.gather(batch("a", ids), batch("b", ids[::-1]), batch("c", ids[5:6])), 10)
    assert overlap == [False, False, False]
    assert flights._locks == {}
