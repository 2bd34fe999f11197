"""Delay tiers: hold retry timers until due, then hand them back to the job processor.

One consumer reads every tier topic (``brigade.retry.<tier>``). A timer that is not due
yet pauses *its* partition and rewinds to it; other partitions keep flowing and nothing
sleeps: the poll loop's timeout is the time to the next resume. Within one tier messages
arrive roughly in due order (same delay class), so holding the head of a partition holds
little else. A timer due later than its tier's length (beyond the largest tier) is
re-delayed: written again to the same tier after one tier length. Offsets are committed
only after the forwarded message's delivery report says the broker has it, so a crash
re-forwards (the processor treats a second due timer for the same attempt as stale). A
refused forward, or any other error, ends the loop, and ``on_failure`` is told: the
processors' app then ends the process so its supervisor restarts it, rather than leave
the tiers silently unread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition

from brigade.errors import BrigadeError, DecodeError
from brigade.kafka.clients import NOT_IDEMPOTENT, make_consumer, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from processors.metrics import Metrics
from schemas.codec import Codec
from schemas.records import DeadLetter, RetryTimer

log = logging.getLogger(__name__)
_MAX_POLL_S = 0.2
_FLUSH_S = 1.0  # one wait for a delivery report; repeated until it arrives or the loop stops


class ForwardFailed(BrigadeError):
    """The broker refused a forwarded timer."""


class _Stopping(Exception):
    """Asked to stop while a forward was unconfirmed: leave it uncommitted, not a failure."""


class DelayTiers:
    """The delay agent over all tier topics, run on its own thread beside the Faust worker."""

    def __init__(self, *, settings: Settings, metrics: Metrics, group: str | None = None,
                 on_failure: Callable[[BaseException], None] | None = None,
                 instance: str | None = None) -> None:
        """``on_failure`` is called (on the delay thread) when the loop dies of an error;
        ``instance`` makes the consumer a static group member (``group.instance.id``)."""
        self._settings = settings
        self._on_failure = on_failure
        self._topology = Topology(settings)
        self._metrics = metrics
        self._group = group or f"{settings.kafka.topic_prefix}-delay-tiers"
        self._membership = {} if instance is None else {"group.instance.id": instance}
        self._tier_of = {topic: seconds for seconds, topic in self._topology.retry_tiers()}
        self._codec = Codec(metrics=metrics.registry)
        self._held: dict[tuple[str, int], float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the delay loop on a daemon thread."""
        self._thread = threading.Thread(target=self._run, name="brigade-delay-tiers", daemon=True)
        self._thread.start()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Stop the loop and wait for it to close its clients."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def _run(self) -> None:
        try:
            self._loop()
        except _Stopping:
            log.info("delay tiers stopped with a forward unconfirmed; it is not committed")
        except BaseException as exc:
            log.critical("delay tiers stopped: %r", exc, exc_info=True)
            if self._on_failure is not None:
                self._on_failure(exc)
            raise

    def _loop(self) -> None:
        consumer = make_consumer(self._settings, self._group, **self._membership)
        # Not idempotent (see NOT_IDEMPOTENT); one timer is in flight at a time, so nothing
        # is reordered.
        producer = make_producer(self._settings, **NOT_IDEMPOTENT)
        consumer.subscribe(list(self._tier_of), on_revoke=self._on_revoke, on_lost=self._on_revoke)
        try:
            while not self._stop.is_set():
                self._resume_due(consumer)
                message = consumer.poll(self._poll_timeout())
                if message is None:
                    continue
                if message.error() is not None:
                    log.warning("delay tiers: consumer error %s", message.error())
                    continue
                self._handle(consumer, producer, message)
        finally:
            producer.flush(10)
            consumer.close()

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        for tp in partitions:
            self._held.pop((tp.topic, tp.partition), None)

    def _poll_timeout(self) -> float:
        if not self._held:
            return _MAX_POLL_S
        return max(0.0, min(_MAX_POLL_S, min(self._held.values()) - time.time()))

    def _resume_due(self, consumer: Consumer) -> None:
        now = time.time()
        due = [tp for tp, until in self._held.items() if until <= now]
        if due:
            consumer.resume([TopicPartition(topic, partition) for topic, partition in due])
            for tp in due:
                del self._held[tp]

    def _handle(self, consumer: Consumer, producer: Producer, message: Message) -> None:
        at = TopicPartition(message.topic() or "", message.partition() or 0, message.offset() or 0)
        if (at.topic, at.partition) in self._held:
            return  # fetched before the pause; it is read again after the rewind
        value: bytes = message.value() or b""
        try:
            timer = self._codec.decode_as(value, RetryTimer)
        except DecodeError as exc:
            letter = self._dead_letter(at, message.key(), exc)
            self._forward(consumer, producer, at, message.key(), self._topology.dlq, letter)
            return
        now = time.time()
        due = timer.due_at.timestamp()
        if due <= now:
            self._forward(consumer, producer, at, message.key(), self._topology.commands, value)
            self._metrics.timers_forwarded.labels(timer.tier).inc()
            return
        written = message.timestamp()[1] / 1000.0
        hold_until = min(due, written + self._tier_of[at.topic])
        if hold_until <= now:  # due beyond this tier's length: wait another round in it
            self._forward(consumer, producer, at, message.key(), at.topic, value)
            return
        consumer.pause([TopicPartition(at.topic, at.partition)])
        consumer.seek(at)
        self._held[(at.topic, at.partition)] = hold_until

    def _forward(self, consumer: Consumer, producer: Producer, at: TopicPartition, key: bytes | None,
                 topic: str, value: bytes) -> None:
        self._deliver(producer, topic, key, value)
        # Commit only what the broker acknowledged: a crash before this re-forwards.
        try:
            consumer.commit(offsets=[TopicPartition(at.topic, at.partition, at.offset + 1)],
                            asynchronous=False)
        except KafkaException as exc:
            # Not a loss: the timer is forwarded again by whoever reads the partition next.
            log.warning("delay tiers: commit of %s[%d]@%d failed: %s", at.topic, at.partition, at.offset, exc)

    def _deliver(self, producer: Producer, topic: str, key: bytes | None, value: bytes) -> None:
        reports: list[KafkaError | None] = []
        producer.produce(topic, key=key, value=value, on_delivery=lambda err, _msg: reports.append(err))
        # flush() returning says nothing about success: wait for this message's own report
        # (librdkafka retries until message.timeout.ms, then reports the error).
        while not reports:
            if self._stop.is_set():
                raise _Stopping
            producer.flush(_FLUSH_S)
        if reports[0] is not None:
            raise ForwardFailed(f"forward to {topic} refused: {reports[0]}")

    def _dead_letter(self, at: TopicPartition, key: bytes | None, exc: DecodeError) -> bytes:
        letter = DeadLetter(source_topic=at.topic, partition=at.partition, offset=at.offset, raw=exc.raw,
                            reason=f"undecodable: {exc.reason}", occurred_at=datetime.now(UTC), key=key)
        self._metrics.dead_letters.labels("undecodable").inc()
        return self._codec.encode(letter)
