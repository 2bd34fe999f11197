"""Status reads from memory: the job states this process's projector has inserted.

Every chDB query costs 5-15 ms of CPU on a small machine, so a status lookup that always
asks ClickHouse cannot be fast under load. The projector running in the API process
already holds each job's latest state when it inserts it; :class:`StatusCache` keeps the
states it has *inserted* (bounded, least recently used first out) so the API can answer
from memory what ClickHouse would answer at that moment, and ask ClickHouse otherwise.

Why an answer from here is never older than ClickHouse's, nor ahead of it (the full
argument is in docs/projections.md, "Status reads from memory"):

* a job's ``jobs`` rows are written only by the projector that owns the job's partition;
* an entry is added only after the insert that wrote it returned (never ahead), and the
  batch's jobs are removed *before* its insert starts, so while ClickHouse may hold a newer
  row than memory, memory holds nothing for that job (a miss, answered by ClickHouse);
* entries of partitions revoked from the projector are dropped before another member can
  fold them (the revoke callback runs before the partitions are handed over), the cache
  starts empty and is cleared when the projector starts or stops, and it answers nothing
  while the projector has not polled Kafka within ``lease_s`` (a consumer that stops
  polling is removed from its group after ``max.poll.interval.ms``).

Thread-safe: the projector's thread writes, the event loop reads, under one lock held for
a dictionary operation or two.
"""

from __future__ import annotations

import sys
import threading
import time
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping
from typing import NamedTuple

from projections.fold import Tracked
from projections.queries import status_from_row
from projections.readmodel import JobStatus
from projections.rows import JOB_COLUMNS, job_values

DEFAULT_LEASE_S = 10.0
_SHARED_TEXT = ("tenant_id", "pool", "model", "priority")


class _Entry(NamedTuple):
    status: JobStatus
    partition: int
    elided: bool  # the inline result was over the cap and is not held


class StatusCache:
    """Bounded map of ``job_id`` to the state last inserted into ``jobs`` by one projector.

    ``max_jobs`` bounds the entries (least recently read or written go first);
    ``inline_max`` is the largest inline result (characters) kept with an entry: a larger
    one is dropped from memory, and reads that need it go to ClickHouse.
    """

    def __init__(self, *, max_jobs: int, inline_max: int = 1024, lease_s: float = DEFAULT_LEASE_S) -> None:
        """Raises ValueError for a size below 1, a negative cap or a lease that is not positive."""
        if max_jobs < 1 or inline_max < 0 or lease_s <= 0:
            raise ValueError("max_jobs must be >= 1, inline_max >= 0 and lease_s > 0")
        self._entries: OrderedDict[str, _Entry] = OrderedDict()
        self._lock = threading.Lock()
        self._max_jobs = max_jobs
        self._inline_max = inline_max
        self._lease_s = lease_s
        self._renewed_at: float | None = None  # None: no projector is running for this cache

    def __len__(self) -> int:
        return len(self._entries)

    # ---- the projector's side ---------------------------------------------------------

    def renew(self) -> None:
        """The projector polled Kafka just now: its assignment is current for ``lease_s``."""
        self._renewed_at = time.monotonic()

    def clear(self) -> None:
        """Forget everything and stop answering until the next :meth:`renew` (projector start/stop)."""
        with self._lock:
            self._renewed_at = None
            self._entries.clear()

    def inserting(self, job_ids: Collection[str]) -> None:
        """Called before a batch's insert: its jobs are answered by ClickHouse until it returns.

        The insert may leave ClickHouse with newer rows even when it fails (``jobs`` goes in
        before ``job_events``), so memory must not keep the older states meanwhile.
        """
        with self._lock:
            for job_id in job_ids:
                self._entries.pop(job_id, None)

    def inserted(self, states: Mapping[str, Tracked], partitions: Mapping[str, int]) -> None:
        """Called after a batch's insert returned: these states are what ClickHouse now holds."""
        fresh = [(job_id, self._entry(tracked, partitions[job_id])) for job_id, tracked in states.items()]
        with self._lock:
            entries = self._entries
            entries.update(fresh)
            for job_id, _ in fresh:
                entries.move_to_end(job_id)
            while len(entries) > self._max_jobs:
                entries.popitem(last=False)

    def drop_partitions(self, partitions: Iterable[int]) -> None:
        """Forget the jobs of partitions this projector no longer owns (another member may fold them)."""
        gone = set(partitions)
        with self._lock:
            keep = [(job_id, e) for job_id, e in self._entries.items() if e.partition not in gone]
            self._entries = OrderedDict(keep)

    def _entry(self, tracked: Tracked, partition: int) -> _Entry:
        # The same row the insert wrote, read back as ClickHouse's answer would be.
        row = dict(zip(JOB_COLUMNS, job_values(tracked), strict=True))
        for name in _SHARED_TEXT:  # thousands of jobs share these values: one copy each
            row[name] = sys.intern(row[name])
        inline = row["result_inline"]
        elided = inline is not None and len(inline) > self._inline_max
        if elided:
            row["result_inline"] = None
        return _Entry(status_from_row(row), partition, elided)

    # ---- the reader's side ------------------------------------------------------------

    def get(self, tenant_id: str, job_id: str, *, with_result: bool = True) -> JobStatus | None:
        """The job's state as inserted, or None: unknown here, another tenant's, or not current.

        With ``with_result`` False the answer may lack an inline result that was over the
        cap (``result_inline`` None); use it only where the result is not shown.
        """
        if not self._current():
            return None
        with self._lock:
            entry = self._entries.get(job_id)
            if entry is None or entry.status.tenant_id != tenant_id:
                return None
            self._entries.move_to_end(job_id)
        if entry.elided and with_result:
            return None
        return entry.status

    def _current(self) -> bool:
        renewed = self._renewed_at
        return renewed is not None and time.monotonic() - renewed < self._lease_s
