"""The projector: tails ``brigade.job-events`` into ClickHouse, exactly once in effect.

A batch closes at ``batch_size`` messages or ``batch_ms`` after its first message,
whichever comes first; it is inserted (see :mod:`projections.writer`) and only then are
its offsets committed. Where to resume is read from ClickHouse, not from the group's
commits: on every assignment each partition is sought to one past the highest offset
``job_events`` holds (or the beginning when it holds none), so a crash between insert
and commit, a redelivery after a rebalance, or a lost ClickHouse database all end with
every event projected once. Commits still happen, for lag monitoring.

Runs as ``brigade projector`` (:meth:`Projector.run_forever`) or as a background thread
of the API process when ClickHouse is embedded (:meth:`Projector.start`).

A failed insert is retried with capped exponential backoff for as long as it fails: the
batch is the next thing the log owes ClickHouse, so there is nothing else to do, and
giving up would silently freeze every read. :meth:`Projector.health` reports the lag, the
last error and whether it is retrying, for ``/readyz`` and ``/metrics``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaException, Message, TopicPartition

from brigade.errors import KafkaError, ProjectionError
from brigade.kafka.clients import make_consumer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.logread import position
from projections.migrations import apply_migrations
from projections.statuscache import StatusCache
from projections.types import ClickHouse
from projections.writer import LogRecord, ProjectionWriter, WriteStats, stored_offsets

log = logging.getLogger(__name__)

_IDLE_POLL_S = 0.2
_RETRY_BACKOFF_S = (0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # the last one repeats forever


@dataclass(frozen=True, slots=True)
class ProjectorHealth:
    """What an operator needs to know about a running projector."""

    running: bool  # the loop is alive (False once it stopped on an error it cannot retry)
    retrying: bool  # the last insert failed and is being retried
    lag: int | None  # events in the log not yet projected (None before the first assignment)
    insert_failures: int  # failed inserts since start
    last_error: str | None  # the latest insert or loop error
    last_error_at: float | None  # its time.time()


class Projector:
    """Projects the event log into ClickHouse; one consumer in group ``<prefix>-projector``."""

    def __init__(
        self,
        *,
        settings: Settings,
        clickhouse: ClickHouse,
        group: str | None = None,
        batch_size: int = 5_000,
        batch_ms: float = 100.0,
        cache_size: int = 50_000,
        after_insert: Callable[[WriteStats], None] | None = None,
        consumer_config: dict[str, Any] | None = None,
        status_cache: StatusCache | None = None,
    ) -> None:
        """Create a projector; nothing connects until :meth:`start` or :meth:`run_forever`.

        ``after_insert`` runs after a batch is inserted and before its offsets are
        committed (tests use it to die at exactly that point). ``consumer_config``
        overrides librdkafka settings (e.g. a shorter ``session.timeout.ms``).
        ``status_cache`` receives the states this projector inserts, for status reads from
        memory; it is emptied when the loop starts and stops and as partitions are revoked.
        """
        if batch_size < 1 or batch_ms <= 0:
            raise ValueError("batch_size must be >= 1 and batch_ms > 0")
        self._settings = settings
        self._ch = clickhouse
        self._group = group or Topology(settings).projector_group
        self._topic = Topology(settings).job_events
        self._batch_size = batch_size
        self._batch_s = batch_ms / 1000.0
        self._after_insert = after_insert
        self._consumer_config = consumer_config or {}
        self._statuses = status_cache
        self._writer = ProjectionWriter(clickhouse, cache_size=cache_size, listener=status_cache)
        self._pending: list[LogRecord] = []
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._progress = threading.Condition()
        self._positions: dict[int, int] = {}
        self._consumer: Consumer | None = None
        self.error: BaseException | None = None
        self._retrying = False
        self._lag: int | None = None
        self._failures = 0
        self._last_error: str | None = None
        self._last_error_at: float | None = None

    # ---- lifecycle --------------------------------------------------------------------

    def start(self) -> None:
        """Run in a background thread until :meth:`stop`."""
        if self._thread is not None:
            raise ProjectionError("projector already started")
        self._thread = threading.Thread(target=self._run_captured, name="brigade-projector", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Finish the batch in hand, commit, close the consumer, and join the thread."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)
            self._thread = None

    def run_forever(self) -> None:
        """Project until :meth:`stop` is called (from a signal handler or another thread).

        Raises:
            KafkaError: the consumer failed fatally.
            ProjectionError: the schema could not be migrated.
        """
        apply_migrations(self._ch)
        consumer = make_consumer(self._settings, self._group, **self._consumer_config)
        self._consumer = consumer
        self._forget_statuses()  # a restarted projector knows nothing it has not inserted itself
        try:
            # A lost assignment (the group moved on without us) is handled as a revoke.
            consumer.subscribe([self._topic], on_assign=self._on_assign, on_revoke=self._on_revoke,
                               on_lost=self._on_revoke)
            while not self._stop.is_set():
                self._collect(consumer)
                self._flush(consumer)
                self._measure_lag(consumer)
        finally:
            self._forget_statuses()
            self._consumer = None
            consumer.close()

    def _forget_statuses(self) -> None:
        if self._statuses is not None:
            self._statuses.clear()

    def _run_captured(self) -> None:
        try:
            self.run_forever()
        except BaseException as exc:
            self.error = exc
            self._note_error(exc)
            log.exception("projector stopped on an error")
            with self._progress:
                self._progress.notify_all()

    # ---- observing progress -----------------------------------------------------------

    def health(self) -> ProjectorHealth:
        """Lag, last error and whether the projector is alive or retrying an insert."""
        running = self.error is None and (self._thread is None or self._thread.is_alive())
        return ProjectorHealth(running=running, retrying=self._retrying, lag=self._lag,
                               insert_failures=self._failures, last_error=self._last_error,
                               last_error_at=self._last_error_at)

    def _note_error(self, exc: BaseException) -> None:
        self._last_error = f"{type(exc).__name__}: {exc}"
        self._last_error_at = time.time()

    def _measure_lag(self, consumer: Consumer) -> None:
        # Cached high watermarks come with every fetch: no broker round trip.
        with self._progress:
            assigned = dict(self._positions)
        try:
            lag = 0
            for tp in consumer.assignment():
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    lag += max(0, high - assigned.get(tp.partition, 0))
        except KafkaException:
            return
        self._lag = lag

    @property
    def stats(self) -> WriteStats:
        """Cumulative counters (events, duplicates, undecodable...)."""
        return self._writer.stats

    def projected_offsets(self) -> dict[int, int]:
        """``{partition: next offset}`` inserted and committed so far."""
        with self._progress:
            return dict(self._positions)

    def wait_for(self, job_id: str, sequence: int, timeout_s: float = 10.0) -> bool:
        """Block until the job's event ``sequence`` is projected; False on timeout."""
        def done() -> bool:
            tracked = self._writer.projected(job_id)
            return self.error is not None or (tracked is not None and tracked.job.sequence >= sequence)

        with self._progress:
            return self._progress.wait_for(done, timeout_s) and self.error is None

    def wait_for_offsets(self, ends: dict[int, int], timeout_s: float = 10.0) -> bool:
        """Block until every partition in ``ends`` is projected up to that next offset."""
        def done() -> bool:
            return self.error is not None or all(self._positions.get(p, 0) >= o for p, o in ends.items())

        with self._progress:
            return self._progress.wait_for(done, timeout_s) and self.error is None

    # ---- the loop ---------------------------------------------------------------------

    def _collect(self, consumer: Consumer) -> None:
        """Fill ``_pending`` until the batch is full or ``batch_ms`` after its first message."""
        deadline: float | None = None
        while len(self._pending) < self._batch_size and not self._stop.is_set():
            remaining = _IDLE_POLL_S if deadline is None else deadline - time.monotonic()
            if remaining <= 0:
                return
            messages = consumer.consume(self._batch_size - len(self._pending), timeout=remaining)
            if self._statuses is not None:
                # Rebalance callbacks ran inside consume(): the assignment the cache reflects is current.
                self._statuses.renew()
            for message in messages:
                self._take(message)
            if self._pending and deadline is None:
                deadline = time.monotonic() + self._batch_s
            if not messages and deadline is None:
                return

    def _take(self, message: Message) -> None:
        error = message.error()
        if error is not None:
            if error.fatal():
                raise KafkaError(f"projector consumer failed: {error}")
            log.warning("projector consumer: %s", error)
            return
        value = message.value() or b""
        partition, offset = position(message)
        self._pending.append(LogRecord(partition, offset, value))

    def _flush(self, consumer: Consumer) -> None:
        if not self._pending:
            return
        batch, self._pending = self._pending, []
        stats = self._write_with_retry(batch, consumer)
        if stats is None:
            return  # stopping with the batch unwritten: not committed, read again next time
        if self._after_insert is not None:
            self._after_insert(stats)
        ends = {partition: offset + 1 for partition, offset in stats.last_offsets.items()}
        offsets = [TopicPartition(self._topic, p, o) for p, o in ends.items()]
        try:
            consumer.commit(offsets=offsets, asynchronous=False)
        except KafkaException as exc:
            # The rows are in; the next assignment resumes from ClickHouse, not the commit.
            log.warning("projector commit failed (harmless, resume is from ClickHouse): %s", exc)
        with self._progress:
            self._positions.update(ends)
            self._progress.notify_all()

    def _write_with_retry(self, batch: list[LogRecord], consumer: Consumer) -> WriteStats | None:
        attempt = 0
        while not self._stop.is_set():
            try:
                stats = self._writer.write(batch)
            except Exception as exc:  # noqa: BLE001 - ClickHouse away, a table renamed: retry
                attempt += 1
                self._failures += 1
                self._retrying = True
                self._note_error(exc)
                backoff = _RETRY_BACKOFF_S[min(attempt, len(_RETRY_BACKOFF_S)) - 1]
                log.warning("projector insert failed (attempt %d), retrying in %.1fs: %s",
                            attempt, backoff, exc)
                self._measure_lag(consumer)
                self._stop.wait(backoff)
                continue
            self._retrying = False
            return stats
        return None

    # ---- rebalances -------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        stored = stored_offsets(self._ch)
        for tp in partitions:
            tp.offset = stored[tp.partition] + 1 if tp.partition in stored else OFFSET_BEGINNING
        log.info("projector assigned %s", {tp.partition: tp.offset for tp in partitions})
        assigned = {tp.partition for tp in partitions}
        with self._progress:
            self._positions.update({p: o + 1 for p, o in stored.items() if p in assigned})
            self._progress.notify_all()
        consumer.assign(partitions)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        # Insert what we hold before another member resumes from ClickHouse's offsets.
        self._flush(consumer)
        revoked = {tp.partition for tp in partitions}
        if self._statuses is not None:
            # Before the partitions move: their next owner's inserts would make these stale.
            self._statuses.drop_partitions(revoked)
        with self._progress:
            for partition in revoked:
                self._positions.pop(partition, None)
        consumer.unassign()

