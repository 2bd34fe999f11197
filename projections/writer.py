"""Turn batches of ``brigade.job-events`` messages into projection rows, and insert them.

Shared by the live projector and by ``brigade replay --into``: the same code projects
the log whether it is tailed or replayed, so a rebuild equals the live tables.

Exactly-once effect, in three layers:

1. **Kafka position stored with the data.** Each ``job_events`` row carries its
   partition and offset; a consumer resumes each partition after the highest stored
   offset (:func:`stored_offsets`), not after its committed offset, so a crash between
   insert and commit replays nothing that was inserted. ``job_events`` is inserted
   *last* (after ``jobs`` and ``circuit_events``, whose re-inserts are idempotent), so
   its offsets never claim rows another table lacks.
2. **Per-job sequence.** One job's events are ordered in one partition; an event whose
   sequence is not past the job's folded state is a duplicate (a processor re-emission)
   and is dropped before any insert, so the rollups never count it.
3. **ReplacingMergeTree** keyed by event id (``job_events``, ``circuit_events``) and by
   job with ``sequence`` as version (``jobs``) as the backstop.

Per-job state lives in an LRU; a job missing from it (evicted, or first seen after a
restart) is re-folded from its ``raw`` events in ``job_events``, never from ``jobs``,
which may run ahead of ``job_events`` after a crash.
"""

from __future__ import annotations

import base64
import logging
from collections import OrderedDict
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol

from brigade.errors import DecodeError, Skip
from processors.lifecycle import IllegalTransition
from projections.fold import Measures, Tracked, advance
from projections.rows import (
    CIRCUIT_COLUMNS,
    EVENT_COLUMNS,
    JOB_COLUMNS,
    Columns,
    circuit_values,
    event_values,
    job_values,
)
from projections.types import ClickHouse
from schemas import records as r
from schemas.codec import Codec

log = logging.getLogger(__name__)

_CIRCUIT_TYPES = (r.CircuitOpened, r.CircuitHalfOpened, r.CircuitClosed)


class LogRecord(NamedTuple):
    """One message of ``brigade.job-events``: where it sits and its value."""

    partition: int
    offset: int
    value: bytes
    key: bytes | None = None


class InsertListener(Protocol):
    """Told about each batch's job states around their insert (the API's status cache)."""

    def inserting(self, job_ids: Collection[str]) -> None:
        """These jobs' rows are about to be inserted (they may be in ClickHouse after a failure too)."""
        ...

    def inserted(self, states: Mapping[str, Tracked], partitions: Mapping[str, int]) -> None:
        """The insert returned: ClickHouse now holds these states (``partitions``: each job's)."""
        ...


@dataclass
class WriteStats:
    """Counters of what a writer did; cumulative across batches."""

    messages: int = 0
    events: int = 0
    circuit_events: int = 0
    duplicates: int = 0
    illegal: int = 0
    undecodable: int = 0
    unexpected: int = 0
    job_rows: int = 0
    refolded_jobs: int = 0
    batches: int = 0
    last_offsets: dict[int, int] = field(default_factory=dict)

    def add(self, other: WriteStats) -> None:
        """Add ``other``'s counters to these."""
        for name in ("messages", "events", "circuit_events", "duplicates", "illegal", "undecodable",
                     "unexpected", "job_rows", "refolded_jobs", "batches"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        self.last_offsets.update(other.last_offsets)


def stored_offsets(ch: ClickHouse) -> dict[int, int]:
    """``{partition: highest offset}`` held in ``job_events``: where projecting resumes."""
    rows = ch.query("SELECT kafka_partition, max(kafka_offset) FROM job_events GROUP BY kafka_partition")
    return {int(partition): int(offset) for partition, offset in rows}


class ProjectionWriter:
    """Folds and inserts batches of job-events messages into one database.

    Not thread-safe: one writer per consuming loop.
    """

    def __init__(
        self, clickhouse: ClickHouse, *, cache_size: int = 50_000, codec: Codec | None = None,
        listener: InsertListener | None = None,
    ) -> None:
        """``cache_size`` bounds the per-job states kept in memory (LRU); ``listener`` hears of inserts."""
        if cache_size < 1:
            raise ValueError("cache_size must be at least 1")
        self._ch = clickhouse
        self._codec = codec or Codec()
        self._cache: OrderedDict[str, Tracked] = OrderedDict()
        self._cache_size = cache_size
        self._listener = listener
        self.stats = WriteStats()

    def projected(self, job_id: str) -> Tracked | None:
        """The job's state as last inserted by this writer, if still cached."""
        return self._cache.get(job_id)

    def write(self, batch: Sequence[LogRecord]) -> WriteStats:
        """Project one batch; on return every row is inserted.

        On failure nothing in memory has moved, so the same batch may be written again.

        Raises:
            ProjectionError: an insert or lookup failed.
        """
        stats = WriteStats(messages=len(batch), batches=1)
        lifecycle, circuits = self._decode(batch, stats)
        states = self._load(lifecycle)
        events = Columns(EVENT_COLUMNS)
        latest: dict[str, Tracked] = {}
        partitions: dict[str, int] = {}
        for record, event in lifecycle:
            folded = self._fold_one(states, event, stats)
            if folded is None:
                continue
            tracked, measures = folded
            latest[tracked.job.job_id] = tracked
            partitions[tracked.job.job_id] = record.partition
            events.add(event_values(tracked, measures, event, record.value, record.partition, record.offset))
        if self._listener is not None:
            self._listener.inserting(latest.keys())
        self._insert(latest.values(), circuits, events, stats)
        if self._listener is not None:
            self._listener.inserted(latest, partitions)
        for job_id, tracked in latest.items():
            self._remember(job_id, tracked)
        for record in batch:
            stats.last_offsets[record.partition] = record.offset
        self.stats.add(stats)
        return stats

    def _decode(
        self, batch: Sequence[LogRecord], stats: WriteStats
    ) -> tuple[list[tuple[LogRecord, r.LifecycleEvent]], list[tuple[LogRecord, r.CircuitEvent]]]:
        lifecycle: list[tuple[LogRecord, r.LifecycleEvent]] = []
        circuits: list[tuple[LogRecord, r.CircuitEvent]] = []
        for record in batch:
            try:
                event = self._codec.decode(record.value)
            except DecodeError as exc:
                stats.undecodable += 1
                log.warning("skipping undecodable job-event at %d:%d: %s",
                            record.partition, record.offset, exc.reason)
                continue
            if isinstance(event, _CIRCUIT_TYPES):
                circuits.append((record, event))
            elif r.is_lifecycle(event):
                lifecycle.append((record, event))
            else:
                stats.unexpected += 1
                log.warning("skipping %s on job-events at %d:%d", type(event).__name__,
                            record.partition, record.offset)
        return lifecycle, circuits

    def _fold_one(self, states: dict[str, Tracked], event: r.LifecycleEvent,
                  stats: WriteStats) -> tuple[Tracked, Measures] | None:
        job_id = event.envelope.job_id
        try:
            tracked, measures = advance(states.get(job_id), event)
        except Skip:
            stats.duplicates += 1
            return None
        except IllegalTransition as exc:
            stats.illegal += 1
            log.warning("job-event %s refused by the state machine: %s", event.envelope.event_id, exc)
            return None
        states[job_id] = tracked
        stats.events += 1
        return tracked, measures

    def _load(self, lifecycle: list[tuple[LogRecord, r.LifecycleEvent]]) -> dict[str, Tracked]:
        """States of the batch's jobs: from the cache, else re-folded from ``job_events``.

        Every job missing from the cache is looked up, ``JobSubmitted`` first or not: the
        processor re-emits a batch's events (same ids and sequences) when it replays it after
        a crash, and a re-emitted ``JobSubmitted`` read by a projector that has forgotten the
        job must be found a duplicate, or the rollups count the job twice. (The lookup for a
        genuinely new job finds no rows; it is one query per batch for all of them.)
        """
        states: dict[str, Tracked] = {}
        missing: dict[str, str] = {}
        for _, event in lifecycle:
            job_id = event.envelope.job_id
            if job_id in states or job_id in missing:
                continue
            cached = self._cache.get(job_id)
            if cached is not None:
                states[job_id] = cached
            else:
                missing[job_id] = event.envelope.tenant_id
        if missing:
            states.update(self._refold(missing))
        return states

    def _refold(self, missing: dict[str, str]) -> dict[str, Tracked]:
        rows = self._ch.query(
            "SELECT job_id, base64Encode(raw) FROM job_events "
            "WHERE tenant_id IN {tenants:Array(String)} AND job_id IN {jobs:Array(String)} "
            "ORDER BY job_id, sequence",
            {"tenants": sorted(set(missing.values())), "jobs": list(missing)},
        )
        states: dict[str, Tracked] = {}
        for job_id, raw in rows:
            event = self._codec.decode(base64.b64decode(raw))
            if not r.is_lifecycle(event):  # the events table holds lifecycle events only
                continue
            try:
                states[job_id], _ = advance(states.get(job_id), event)
            except (Skip, IllegalTransition):
                continue
        self.stats.refolded_jobs += len(states)
        return states

    def _insert(self, jobs: Iterable[Tracked], circuits: list[tuple[LogRecord, r.CircuitEvent]],
                events: Columns, stats: WriteStats) -> None:
        job_rows = Columns(JOB_COLUMNS)
        for tracked in jobs:
            job_rows.add(job_values(tracked))
        circuit_rows = Columns(CIRCUIT_COLUMNS)
        for record, circuit in circuits:
            circuit_rows.add(circuit_values(circuit, record.partition, record.offset))
        # Order matters: job_events carries the resume offsets, so it goes last.
        if len(job_rows):
            self._ch.insert_columns("jobs", job_rows.data)
        if len(circuit_rows):
            self._ch.insert_columns("circuit_events", circuit_rows.data)
        if len(events):
            self._ch.insert_columns("job_events", events.data)
        stats.job_rows += len(job_rows)
        stats.circuit_events += len(circuit_rows)

    def _remember(self, job_id: str, tracked: Tracked) -> None:
        cache = self._cache
        cache[job_id] = tracked
        cache.move_to_end(job_id)
        if len(cache) > self._cache_size:
            cache.popitem(last=False)
