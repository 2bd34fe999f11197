"""Idempotency inside one API process: recent submissions and single-flight per job id.

Keyed submissions are held to one payload across processes by a durable claim
(:mod:`ingress.claims`), written before the 202. In front of it, each process remembers the
payload hash of jobs it accepted recently (a bounded LRU) so a repeat costs no store access,
and a per-job-id single flight so concurrent identical submissions produce one command. The
job processor stays the backstop (it keeps the first spec and emits ``JobRejected``) for
commands that reach the log without a claim.
"""

from __future__ import annotations

import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable
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
        async with self.hold_all([key]):
            yield

    @asynccontextmanager
    async def hold_all(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold the locks of every key, taken in sorted order so two holders cannot deadlock.

        One context for a whole batch: a context manager per key cost as much per item as
        preparing the job.
        """
        ordered = sorted(set(keys))
        held: list[asyncio.Lock] = []
        for key in ordered:
            lock, users = self._locks.get(key, (None, 0))
            self._locks[key] = (lock := lock or asyncio.Lock(), users + 1)
        try:
            for key in ordered:
                lock = self._locks[key][0]
                await lock.acquire()
                held.append(lock)
            yield
        finally:
            for lock in held:
                lock.release()
            for key in ordered:
                lock, users = self._locks[key]
                if users <= 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)
