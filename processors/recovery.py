"""Where a partition's table states stand on the event log, and reading what lies beyond.

The job processor writes a batch's states to its table only after the broker has
acknowledged the batch's events. A processor killed between the two leaves events on
``brigade.job-events`` that the table does not hold. Deciding the uncommitted inputs again
from the older state repeats the same events only when the inputs come back in the same
order, and inputs from two topics need not: a ``started`` outcome read before a
``CancelJob`` that it once followed decided a job a second time.

So every batch also stores, per partition, the offset of the last event its states
include: a *fold marker*, a table entry whose key hashes to that partition, written after
the states on the same changelog partition (so a marker that reached the changelog
implies the states before it did too). A processor that gains a partition folds the events
after the marker into the states before it decides anything there; the inputs decided
again then meet the state their first decision left, and are duplicates.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping

from aiokafka.partitioner import murmur2
from confluent_kafka import KafkaException
from tenacity import retry, retry_if_exception_type, stop_after_delay, wait_exponential

from brigade.errors import KafkaError
from brigade.settings import Settings
from projections.logread import read_log
from projections.writer import LogRecord

MARKER_PREFIX = b"\x00fold-marker:"
"""Job ids never start with a NUL byte, so a marker never collides with a job's state."""

ReadTail = Callable[[Mapping[int, int]], list[LogRecord]]
"""``read_tail({partition: first_offset})``: those partitions' events from each first offset
(never before the log's start) to their end now, in offset order per partition. Blocking."""


def partition_of(key: bytes, partitions: int) -> int:
    """The partition Faust's producer (aiokafka, Java's murmur2) gives ``key``."""
    return (int(murmur2(key)) & 0x7FFFFFFF) % partitions


def marker_keys(partitions: int) -> dict[int, bytes]:
    """One marker key per partition, each hashing to its partition.

    The table picks a key's changelog partition with the producer's partitioner, so the
    key is searched for rather than named: ``<prefix><n>`` for the first ``n`` that lands
    on the partition.
    """
    keys: dict[int, bytes] = {}
    for n in itertools.count():
        key = MARKER_PREFIX + str(n).encode()
        keys.setdefault(partition_of(key, partitions), key)
        if len(keys) == partitions:
            return keys
    raise AssertionError("unreachable: itertools.count() does not end")


def is_marker(key: bytes) -> bool:
    """Whether a table key is a fold marker rather than a job id."""
    return key.startswith(MARKER_PREFIX)


def tail_reader(settings: Settings, topic: str, *, give_up_after_s: float = 60.0) -> ReadTail:
    """A ``ReadTail`` over ``topic`` on the configured cluster.

    Errors are retried for ``give_up_after_s``: a partition is often gained while the
    cluster is still moving leaders (a fresh topic, a broker restart), and a tail that
    cannot be read stops the processor's batch, which then exits uncommitted.
    """

    @retry(retry=retry_if_exception_type((KafkaException, KafkaError)), reraise=True,
           stop=stop_after_delay(give_up_after_s), wait=wait_exponential(multiplier=0.05, max=2.0))
    def read_tail(starts: Mapping[int, int]) -> list[LogRecord]:
        return [record for batch in read_log(settings, topic, partitions=list(starts), starts=starts)
                for record in batch]

    return read_tail
