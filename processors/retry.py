"""Retry policy: exponential backoff with full jitter, and the delay tier a retry waits in.

Pure functions. Jitter comes from an ``rng`` the caller seeds; the job processor seeds it
with the job id and attempt so a redelivered failure schedules exactly the same retry.
"""

from __future__ import annotations

import random
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from brigade.settings import RetrySettings


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random) -> float:
    """Full-jitter backoff: uniform in ``[0, min(cap, base * 2**(attempt-1))]`` seconds.

    ``attempt`` is the attempt that just failed (1 for the first).
    """
    ceiling = min(cap, base * 2.0 ** min(max(attempt - 1, 0), 62))
    return rng.uniform(0.0, ceiling)


def tier_for(delay_s: float, tiers: Sequence[float]) -> float:
    """The smallest tier not shorter than ``delay_s``; beyond the largest, the largest.

    A delay longer than every tier waits in the largest one and is re-delayed there until
    due.
    """
    ordered = sorted(tiers)
    for tier in ordered:
        if tier >= delay_s:
            return tier
    return ordered[-1]


@dataclass(frozen=True, slots=True)
class RetryPlan:
    """When and where a retry waits."""

    delay_s: float
    tier_s: float
    due_at: datetime
    retry_after_s: float | None


def plan_retry(
    *,
    job_id: str,
    failed_attempt: int,
    now: datetime,
    retry_after_ms: int | None,
    policy: RetrySettings,
) -> RetryPlan:
    """Plan the retry after ``failed_attempt``: the model's Retry-After (capped) when given,
    otherwise full-jitter backoff seeded by job id and attempt (deterministic)."""
    retry_after_s = None
    if retry_after_ms is not None and retry_after_ms >= 0:
        retry_after_s = min(retry_after_ms / 1000.0, policy.retry_after_cap_s)
        delay = retry_after_s
    else:
        rng = random.Random(f"{job_id}:{failed_attempt}")
        delay = backoff(failed_attempt, base=policy.base_s, cap=policy.cap_s, rng=rng)
    tier = tier_for(delay, policy.tiers_s)
    return RetryPlan(delay, tier, now + timedelta(seconds=delay), retry_after_s)
