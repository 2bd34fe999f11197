"""Per-tenant token buckets: requests per second and jobs per second.

A bucket may go into debt: a batch of 1,000 jobs is admitted when the bucket holds at least
``min(cost, capacity)`` tokens and then drives the balance negative, so a batch larger than
the burst still gets through eventually while the long-run rate stays the tenant's.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from ingress.tenants import Tenant


@dataclass(slots=True)
class TokenBucket:
    """``rate`` tokens per second up to ``capacity``; ``take`` answers the wait if refused."""

    rate: float
    capacity: float
    tokens: float
    stamp: float

    def take(self, cost: float, now: float) -> float:
        """Take ``cost`` tokens and return 0, or take nothing and return seconds to wait."""
        self.tokens = min(self.capacity, self.tokens + (now - self.stamp) * self.rate)
        self.stamp = now
        needed = min(cost, self.capacity)
        if self.tokens >= needed:
            self.tokens -= cost
            return 0.0
        return (needed - self.tokens) / self.rate


@dataclass(frozen=True, slots=True)
class Refusal:
    """A request over the tenant's limit: which limit, and when to come back."""

    limit: str
    retry_after_s: float

    @property
    def retry_after_header(self) -> str:
        """Whole seconds, at least 1, as ``Retry-After`` wants."""
        return str(max(1, math.ceil(self.retry_after_s)))


class RateLimiter:
    """Token buckets per tenant, sized from the tenant's configuration."""

    def __init__(self, *, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[tuple[str, str], TokenBucket] = {}

    def _bucket(self, tenant: Tenant, kind: str, rate: float) -> TokenBucket:
        key = (tenant.tenant_id, kind)
        bucket = self._buckets.get(key)
        capacity = max(1.0, rate * tenant.burst_seconds)
        if bucket is None or bucket.rate != rate or bucket.capacity != capacity:
            bucket = TokenBucket(rate=rate, capacity=capacity, tokens=capacity, stamp=self._clock())
            self._buckets[key] = bucket
        return bucket

    def request(self, tenant: Tenant) -> Refusal | None:
        """Charge one request; a Refusal when over ``requestsPerSecond``."""
        wait = self._bucket(tenant, "requests", tenant.requests_per_second).take(1, self._clock())
        return Refusal("requests", wait) if wait else None

    def jobs(self, tenant: Tenant, count: int) -> Refusal | None:
        """Charge ``count`` jobs; a Refusal when over ``jobsPerSecond``."""
        wait = self._bucket(tenant, "jobs", tenant.jobs_per_second).take(count, self._clock())
        return Refusal("jobs", wait) if wait else None
