"""Idempotency inside one API process: recent submissions and single-flight per job id.

The job processor is the authority on duplicates and conflicts (it keeps the first spec and
emits ``JobRejected`` for a different payload under the same key). The API still answers a
conflict synchronously: it remembers the payload hash of jobs it accepted recently (a bounded
LRU) and asks the read model for older ones. The gap: two API replicas accepting the same key
with different payloads within the projection delay both answer 202; the processor's
rejection event is then the backstop and shows in the job's events.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class Accepted:
    """What this process knows about a job it published."""

    job_id: str
    tenant_id: str
    payload_hash: str
    priority: str
    created_at: datetime


class RecentJobs:
    """A bounded LRU of jobs this process published, newest kept."""

    def __init__(self, *, capacity: int = 200_000) -> None:
        if capacity < 1:
            raise ValueError("RecentJobs capacity must be at least 1")
        self._capacity = capacity
        self._jobs: OrderedDict[str, Accepted] = OrderedDict()

    def __len__(self) -> int:
        return len(self._jobs)

    def get(self, job_id: str) -> Accepted | None:
        """The remembered job, or None."""
        return self._jobs.get(job_id)

    def remember(self, accepted: Accepted) -> None:
        """Record a published job, evicting the oldest past capacity."""
        self._jobs[accepted.job_id] = accepted
        self._jobs.move_to_end(accepted.job_id)
        while len(self._jobs) > self._capacity:
            self._jobs.popitem(last=False)


class SingleFlight:
    """One in-flight submission per job id: concurrent identical requests wait for the first."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock of ``key``; the entry is dropped when nobody waits for it."""
        lock, users = self._locks.get(key, (None, 0))
        if lock is None:
            lock = asyncio.Lock()
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)
