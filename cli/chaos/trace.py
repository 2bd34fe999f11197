"""Every message about a few jobs, from every topic of the stack: the evidence an unclean run keeps.

When a run loses a job or decides one twice, the ledger's counts say *that* it happened; the
messages say how (which command, which work items and outcomes, which events at which
sequences, which state the processor stored). ``trace_jobs`` reads every topic of the stack
from its first offset to its end once, and keeps, per job, each message whose key is the job
id, or whose decoded record names it, in log order per partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Collection
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, Message, TopicPartition

from brigade.errors import DecodeError
from brigade.kafka.clients import make_admin, make_consumer
from brigade.settings import Settings
from schemas.codec import Codec

#: Characters of a record's text kept per message (a result or a spec can be long).
TEXT_LIMIT = 400


@dataclass(frozen=True, slots=True)
class Traced:
    """One message about a job."""

    topic: str
    partition: int
    offset: int
    at: str  # the message's timestamp, UTC, to the millisecond
    text: str  # the decoded record (or the raw bytes of a non-Avro value, such as a state)

    def line(self) -> str:
        """The message on one line: ``time topic[partition]@offset: record``."""
        return f"{self.at} {self.topic}[{self.partition}]@{self.offset}: {self.text}"


def trace_jobs(
    settings: Settings, job_ids: Collection[str], *, timeout_s: float = 60.0
) -> dict[str, list[str]]:
    """``{job id: [message line, ...]}`` for ``job_ids`` across every topic of ``settings``' stack."""
    wanted = set(job_ids)
    if not wanted:
        return {}
    topics = make_admin(settings).list_topics(timeout=10).topics
    start = [TopicPartition(name, p, OFFSET_BEGINNING) for name, meta in topics.items()
             if name.startswith(settings.kafka.topic_prefix) for p in meta.partitions]
    group = f"chaos-trace-{uuid.uuid4().hex[:8]}"  # never joined or committed: assign only
    consumer = make_consumer(settings, group, **{"enable.partition.eof": True})
    found: dict[str, list[Traced]] = {job_id: [] for job_id in wanted}
    try:
        consumer.assign(start)
        _read_to_end(consumer, {(tp.topic, tp.partition) for tp in start}, wanted, found, timeout_s)
    finally:
        consumer.close()
    return {job_id: [t.line() for t in sorted(lines, key=lambda t: (t.at, t.topic, t.offset))]
            for job_id, lines in found.items()}


def _read_to_end(consumer: Consumer, left: set[tuple[str, int]], wanted: set[str],
                 found: dict[str, list[Traced]], timeout_s: float) -> None:
    codec = Codec()
    deadline = time.monotonic() + timeout_s
    while left and time.monotonic() < deadline:
        for message in consumer.consume(1000, timeout=1.0):
            error = message.error()
            if error is not None:
                if error.code() == KafkaError._PARTITION_EOF:
                    left.discard((message.topic() or "", message.partition() or 0))
                continue
            text = _text(codec, message)
            key = (message.key() or b"").decode(errors="replace")
            for job_id in wanted:
                if job_id == key or job_id in text:
                    found[job_id].append(_traced(message, text[:TEXT_LIMIT]))


def _text(codec: Codec, message: Message) -> str:
    value = message.value() or b""
    try:
        return repr(codec.decode(value))
    except DecodeError:
        return value.decode(errors="replace")  # a stored state (JSON), or another raw value


def _traced(message: Message, text: str) -> Traced:
    _kind, millis = message.timestamp()
    at = datetime.fromtimestamp(millis / 1000, UTC).strftime("%H:%M:%S.%f")[:-3]
    return Traced(topic=message.topic() or "", partition=message.partition() or 0,
                  offset=message.offset() or 0, at=at, text=text)

