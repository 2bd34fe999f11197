"""Reading the truth while the run goes on: the event log, the result store, the emulator.

``LogTail`` follows ``brigade.job-events`` from its first offset with no consumer group
(nothing is committed, nothing is skipped) and folds every event into the ledger; it
survives broker restarts because the Kafka client reconnects by itself.
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from typing import Any

import fsspec
import httpx
from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from brigade.errors import DecodeError
from brigade.kafka.clients import make_consumer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from cli.chaos.ledger import Ledger, LoggedEvent, logged_event
from schemas.codec import Codec


class LogTail:
    """A background reader of the event log into a ``Ledger`` (read it under ``lock``)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.ledger = Ledger()
        self.lock = threading.Lock()
        self.undecodable = 0
        self._topic = Topology(settings).job_events
        # Quiet: the broker is down on purpose for a while, and the client reconnects alone.
        self._consumer = make_consumer(settings, f"chaos-tail-{uuid.uuid4().hex[:8]}", log_level=0)
        self._partitions = settings.topics.partitions
        self._positions: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="chaos-log-tail", daemon=True)

    def start(self) -> None:
        """Begin reading from the start of every partition."""
        start = [TopicPartition(self._topic, p, OFFSET_BEGINNING) for p in range(self._partitions)]
        self._consumer.assign(start)
        self._thread.start()

    def close(self) -> None:
        """Stop reading and close the consumer."""
        self._stop.set()
        self._thread.join(timeout=30)
        self._consumer.close()

    def caught_up(self, ends: dict[int, int]) -> bool:
        """Whether every partition has been read up to ``ends`` (offsets seen earlier)."""
        with self.lock:
            return all(self._positions.get(p, 0) >= end for p, end in ends.items() if end > 0)

    def _run(self) -> None:
        codec = Codec()
        while not self._stop.is_set():
            messages = self._consumer.consume(500, timeout=0.5)
            events: list[LoggedEvent] = []
            positions: dict[int, int] = {}
            for message in messages:
                if message.error() is not None:
                    continue
                partition, offset = message.partition(), message.offset()
                if partition is not None and offset is not None:
                    positions[partition] = offset + 1
                event = self._decode(codec, message.value() or b"")
                if event is not None:
                    events.append(event)
            with self.lock:
                for event in events:
                    self.ledger.add(event)
                self._positions.update(positions)

    def _decode(self, codec: Codec, value: bytes) -> LoggedEvent | None:
        try:
            return logged_event(codec.decode(value))
        except DecodeError:
            self.undecodable += 1
            return None


def end_offsets(settings: Settings) -> dict[int, int]:
    """``{partition: next offset}`` of the event log now."""
    from projections.logread import log_end_offsets

    return log_end_offsets(settings, Topology(settings).job_events)


def result_in_store(event: LoggedEvent) -> bool:
    """Whether a success's result is in the store with the digest its event names."""
    if event.result_ref is None:
        return True  # small results travel inline in the event itself
    try:
        with fsspec.open(event.result_ref, "rb") as handle:
            data: bytes = handle.read()
    except FileNotFoundError:
        return False
    return hashlib.sha256(data).hexdigest() == event.result_sha256


def emulator_stats(url: str) -> dict[str, Any]:
    """The emulator's counts: requests, statuses, and every input it answered."""
    stats: dict[str, Any] = httpx.get(f"{url}/_emulator/stats", timeout=60).json()
    return stats
