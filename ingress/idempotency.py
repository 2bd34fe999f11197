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
from collections import OrderedDict, deque
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
    """One in-flight submission per job id: concurrent identical requests wait for the first.

    A key is held while it is in ``_locks``; its value holds the waiters, in arrival order,
    or None when nobody waits. Taking a free key is a dict insert with no lock object and no
    await: a 500-job batch takes 500 keys, and ``asyncio.Lock`` per key cost as much as
    encoding the job. A holder hands a key straight to its first waiter (FIFO, as
    ``asyncio.Lock``).
    """

    def __init__(self) -> None:
        self._locks: dict[str, deque[asyncio.Future[None]] | None] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold ``key``; the entry is dropped when nobody waits for it."""
        async with self.hold_all([key]):
            yield

    @asynccontextmanager
    async def hold_all(self, keys: Iterable[str]) -> AsyncIterator[None]:
        """Hold every key, taken in sorted order so two holders cannot deadlock.

        One context for a whole batch: a context manager per key cost as much per item as
        preparing the job.
        """
        taken: list[str] = []
        try:
            for key in sorted(set(keys)):
                if key in self._locks:
                    await self._wait(key)
                else:
                    self._locks[key] = None
                taken.append(key)
            yield
        finally:
            for key in taken:
                self._release(key)

    async def _wait(self, key: str) -> None:
        """Queue behind the key's holder until it hands the key over."""
        waiters = self._locks[key]
        if waiters is None:
            waiters = self._locks[key] = deque()
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if not waiter.cancelled():  # handed over as the caller was cancelled: pass it on
                self._release(key)
            raise

    def _release(self, key: str) -> None:
        """Hand ``key`` to its first live waiter, or free it."""
        waiters = self._locks[key]
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():  # a cancelled waiter stays queued until here
                waiter.set_result(None)
                return
        del self._locks[key]
