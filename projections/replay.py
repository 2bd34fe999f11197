"""Audit replay: fold the event log again and check, or rebuild, the projections.

``verify`` folds ``brigade.job-events`` with the processor's state machine and compares
each job's replayed state with the ``jobs`` projection and, when given, with the job
processor's table (read from its changelog topic), listing every difference.
``rebuild`` projects the log into a fresh database through the same writer the live
projector uses, so a schema change or a lost ClickHouse is recovered from the log alone.
"""

from __future__ import annotations

import dataclasses
import multiprocessing
import operator
import os
import time
from collections.abc import Callable, Collection, Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from brigade.errors import DecodeError, Skip
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from processors.lifecycle import IllegalTransition, Job
from projections.fold import Tracked, track
from projections.logread import log_bounds, read_log
from projections.migrations import apply_migrations
from projections.types import ClickHouse
from projections.writer import LogRecord, ProjectionWriter, WriteStats
from schemas import records as r
from schemas.codec import Codec

#: Fields of a ``jobs`` row that a replay recomputes and compares.
COMPARED = ("tenant_id", "status", "sequence", "attempts", "pool", "lane", "model", "result_ref",
            "cancel_requested", "dead_lettered", "error")

Progress = Callable[[int, int], None]
"""Called after each batch with (messages so far, events folded so far)."""

#: Below this many messages one process replays alone: starting another costs more than it saves.
PARALLEL_MIN_MESSAGES = 100_000


@dataclass(frozen=True, slots=True)
class Difference:
    """One way a stored state differs from the replayed one."""

    job_id: str
    source: str  # "jobs" (the projection) or "processor" (its table)
    field: str
    replayed: Any
    stored: Any


@dataclass
class Replayed:
    """The log folded: every job's state and what the fold skipped."""

    jobs: dict[str, Tracked] = field(default_factory=dict)
    messages: int = 0
    events: int = 0
    duplicates: int = 0
    illegal: int = 0
    undecodable: int = 0
    partial: set[str] = field(default_factory=set)
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # CPU time of every process that folded (Kafka client threads included)

    @property
    def events_per_s(self) -> float:
        """Messages read and folded per second."""
        return self.messages / self.seconds if self.seconds > 0 else 0.0

    @property
    def events_per_cpu_s(self) -> float:
        """Messages read and folded per CPU second: the rate one idle core would give."""
        return self.messages / self.cpu_seconds if self.cpu_seconds > 0 else 0.0


@dataclass
class VerifyReport:
    """The result of ``verify``: differences (empty when everything agrees) and counts."""

    replayed: Replayed
    differences: list[Difference]
    compared_jobs: int
    compared_processor_jobs: int = 0

    @property
    def ok(self) -> bool:
        """True when no stored state differs from the replay."""
        return not self.differences


def fold_log(batches: Iterable[list[LogRecord]], *, progress: Progress | None = None) -> Replayed:
    """Fold every lifecycle event in ``batches``; circuit events and junk are passed over.

    A job whose first event in the range is not ``JobSubmitted`` (a replay from a
    timestamp) is recorded as partial and not folded.
    """
    codec = Codec()
    out = Replayed()
    started, cpu = time.perf_counter(), time.process_time()
    for batch in batches:
        out.messages += len(batch)
        for record in batch:
            _fold_record(out, codec, record.value)
        if progress is not None:
            progress(out.messages, out.events)
    out.seconds, out.cpu_seconds = time.perf_counter() - started, time.process_time() - cpu
    return out


def _fold_record(out: Replayed, codec: Codec, value: bytes) -> None:
    try:
        event = codec.decode(value)
    except DecodeError:
        out.undecodable += 1
        return
    if not r.is_lifecycle(event):
        return
    envelope = event.envelope
    job_id = envelope.job_id
    if job_id in out.partial:
        return
    try:
        # The fold's states are its own until it returns: folded in place.
        out.jobs[job_id] = track(out.jobs.get(job_id), event, owned=True)
        out.events += 1
    except Skip:
        out.duplicates += 1
    except IllegalTransition:
        if job_id not in out.jobs and not isinstance(event, r.JobSubmitted):
            out.partial.add(job_id)
        else:
            out.illegal += 1


def replay_log(
    settings: Settings, topic: str, *, since: datetime | None = None, processes: int | None = None,
    progress: Progress | None = None,
) -> Replayed:
    """Read ``topic`` from ``since`` (or its start) to its end now and fold it.

    Partitions are independent (a job's events are all in one), so with ``processes`` > 1
    the partitions are split into that many shares of about equal size: this process
    folds one, child processes fold the others and send back their jobs' states.
    ``None`` picks one process per idle core (by load average) for logs of at least
    ``PARALLEL_MIN_MESSAGES`` messages, else one. With several processes ``progress`` is
    called per finished share.
    """
    bounds = log_bounds(settings, topic)
    shares = _shares(bounds, _process_count(processes, bounds))
    if len(shares) <= 1:
        return fold_log(read_log(settings, topic, since=since), progress=progress)
    started = time.perf_counter()
    # Not fork: this process may hold librdkafka clients, whose threads do not survive one.
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload(["projections.replay"])
    with ProcessPoolExecutor(max_workers=len(shares) - 1, mp_context=context) as pool:
        futures = [pool.submit(_fold_share, settings, topic, share, since) for share in shares[1:]]
        out = fold_log(read_log(settings, topic, since=since, partitions=shares[0]))
        for future in as_completed(futures):
            _merge(out, future.result())
            if progress is not None:
                progress(out.messages, out.events)
    out.seconds = time.perf_counter() - started
    return out


def _process_count(requested: int | None, bounds: Mapping[int, tuple[int, int]]) -> int:
    filled = sum(1 for low, high in bounds.values() if high > low)
    if requested is None:
        total = sum(high - low for low, high in bounds.values())
        requested = _idle_cores() if total >= PARALLEL_MIN_MESSAGES else 1
    return max(1, min(requested, filled))


def _idle_cores() -> int:
    # Measured on a shared 2-core machine with load ~4: two processes were slower than
    # one (each got half a core, and the second one's start-up was not paid back).
    cores = os.cpu_count() or 1
    try:
        load = os.getloadavg()[0]
    except (AttributeError, OSError):  # not every platform reports one
        load = 0.0
    return max(1, min(cores, 1 + int(cores - load)))


def _shares(bounds: Mapping[int, tuple[int, int]], count: int) -> list[list[int]]:
    """Partitions split into ``count`` shares of about equal message counts (largest first)."""
    shares: list[list[int]] = [[] for _ in range(count)]
    sizes = [0] * count
    for partition in sorted(bounds, key=lambda p: bounds[p][0] - bounds[p][1]):
        smallest = sizes.index(min(sizes))
        shares[smallest].append(partition)
        sizes[smallest] += bounds[partition][1] - bounds[partition][0]
    return [sorted(share) for share in shares if share]


class _Flat:
    """A frozen slots dataclass as a plain tuple of its field values, and back.

    Pickling the states themselves costs ~40 us per job (dataclasses' ``__getstate__`` and
    ``__setstate__`` run in Python for every object); plain tuples cost a few, which is
    what makes shipping a share's states back to the parent cheaper than folding them.
    """

    def __init__(self, cls: type, nested: str | None = None, inner: _Flat | None = None) -> None:
        names = [item.name for item in dataclasses.fields(cls)]
        self._cls, self._values = cls, operator.attrgetter(*names)
        self._setters = tuple(getattr(cls, name).__set__ for name in names)  # slot descriptors
        self._nested = names.index(nested) if nested is not None else -1
        self._inner = inner

    def pack(self, value: Any) -> tuple[Any, ...] | None:
        if value is None:
            return None
        values: tuple[Any, ...] = self._values(value)
        if self._inner is not None:
            at = self._nested
            values = (*values[:at], self._inner.pack(values[at]), *values[at + 1:])
        return values

    def unpack(self, values: tuple[Any, ...] | None) -> Any:
        if values is None:
            return None
        if self._inner is not None:
            at = self._nested
            values = (*values[:at], self._inner.unpack(values[at]), *values[at + 1:])
        state: Any = object.__new__(self._cls)
        for set_slot, value in zip(self._setters, values, strict=True):
            set_slot(state, value)
        return state


_TRACKED = _Flat(Tracked, "job", _Flat(Job, "spec", _Flat(r.JobSpec)))


@dataclass
class _Share:
    """What a child sends back: its counters and its jobs' states as plain tuples."""

    counts: Replayed
    states: list[tuple[Any, ...] | None]


def _fold_share(
    settings: Settings, topic: str, partitions: Collection[int], since: datetime | None
) -> _Share:
    """One child's work: its partitions read, decoded and folded."""
    replayed = fold_log(read_log(settings, topic, since=since, partitions=partitions))
    states = [_TRACKED.pack(tracked) for tracked in replayed.jobs.values()]
    replayed.jobs = {}
    return _Share(replayed, states)


def _merge(out: Replayed, share: _Share) -> None:
    # Shares hold disjoint partitions, so disjoint jobs: a plain union.
    for values in share.states:
        tracked: Tracked = _TRACKED.unpack(values)
        out.jobs[tracked.job.job_id] = tracked
    counts = share.counts
    out.partial |= counts.partial
    out.cpu_seconds += counts.cpu_seconds
    out.messages += counts.messages
    out.events += counts.events
    out.duplicates += counts.duplicates
    out.illegal += counts.illegal
    out.undecodable += counts.undecodable


def expected_row(tracked: Tracked) -> dict[str, Any]:
    """The compared fields of the ``jobs`` row a job's replayed state implies."""
    job = tracked.job
    return {
        "tenant_id": job.tenant_id, "status": tracked.status, "sequence": job.sequence,
        "attempts": job.attempt, "pool": job.pool or "", "lane": job.lane or "", "model": job.model or "",
        "result_ref": job.result_ref, "cancel_requested": job.cancel_requested,
        "dead_lettered": job.dead_lettered, "error": job.last_error,
    }


def compare_projection(replayed: Replayed, ch: ClickHouse) -> tuple[list[Difference], int]:
    """Differences between the replayed states and the ``jobs`` table, and jobs compared."""
    rows = ch.query_dicts(f"SELECT job_id, {', '.join(COMPARED)} FROM jobs FINAL")
    stored = {row.pop("job_id"): row for row in rows}
    differences: list[Difference] = []
    for job_id, tracked in replayed.jobs.items():
        row = stored.pop(job_id, None)
        if row is None:
            differences.append(Difference(job_id, "jobs", "row", tracked.status, None))
            continue
        for name, value in expected_row(tracked).items():
            have = bool(row[name]) if isinstance(value, bool) else row[name]
            if have != value:
                differences.append(Difference(job_id, "jobs", name, value, have))
    differences += [Difference(job_id, "jobs", "row", None, row["status"])
                    for job_id, row in stored.items() if job_id not in replayed.partial]
    return differences, len(replayed.jobs)


def compare_processor(replayed: Replayed, states: Mapping[str, Job]) -> list[Difference]:
    """Differences between the replayed states and the job processor's table."""
    differences: list[Difference] = []
    for job_id, tracked in replayed.jobs.items():
        theirs = states.get(job_id)
        if theirs is None:
            differences.append(Difference(job_id, "processor", "row", tracked.status, None))
        elif theirs != tracked.job:
            for name in ("status", "sequence", "phase", "attempt", "pool", "model", "result_ref",
                         "dead_lettered", "cancel_requested"):
                ours, stored = getattr(tracked.job, name), getattr(theirs, name)
                if ours != stored:
                    differences.append(Difference(job_id, "processor", name, ours, stored))
    return differences


def verify(
    settings: Settings, ch: ClickHouse, *, since: datetime | None = None,
    processor_states: Mapping[str, Job] | None = None, progress: Progress | None = None,
    processes: int | None = None,
) -> VerifyReport:
    """Replay the log and compare with the ``jobs`` projection (and the processor's table).

    ``processes``: see ``replay_log`` (``None``: one per core for large logs).
    """
    replayed = replay_log(settings, Topology(settings).job_events, since=since, processes=processes,
                          progress=progress)
    differences, compared = compare_projection(replayed, ch)
    processor_count = 0
    if processor_states is not None:
        differences += compare_processor(replayed, processor_states)
        processor_count = len(processor_states)
    return VerifyReport(replayed, differences, compared, processor_count)


def rebuild(
    settings: Settings, ch: ClickHouse, *, since: datetime | None = None,
    progress: Progress | None = None, cache_size: int = 200_000,
) -> tuple[WriteStats, float]:
    """Project the log into ``ch``'s database (migrated first); return counters and seconds.

    With ``since``, jobs already in that database are continued from their stored events.
    """
    apply_migrations(ch)
    writer = ProjectionWriter(ch, cache_size=cache_size)
    started = time.perf_counter()
    for batch in read_log(settings, Topology(settings).job_events, since=since, batch_size=20_000):
        writer.write(batch)
        if progress is not None:
            progress(writer.stats.messages, writer.stats.events)
    return writer.stats, time.perf_counter() - started


def processor_changelog(settings: Settings) -> str:
    """The changelog topic of the job processor's ``jobs`` table (Faust's naming)."""
    return Topology(settings).processor_changelog


def read_processor_states(settings: Settings) -> dict[str, Job]:
    """The job processor's table, as the latest value per key of its changelog topic."""
    from processors.recovery import is_marker
    from processors.state import decode_job

    latest: dict[bytes, bytes | None] = {}
    for batch in read_log(settings, processor_changelog(settings)):
        for record in batch:
            if record.key is not None and not is_marker(record.key):
                latest[record.key] = record.value or None
    return {key.decode(): decode_job(value) for key, value in latest.items() if value is not None}
