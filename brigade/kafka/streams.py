"""The typed edge of Faust: what Brigade keeps on an app, and the aiokafka producer under it.

Faust's ``App`` has no place for an application's own objects, and the producer Brigade sends
through directly (``_ensure_producer()``, the aiokafka client Faust commits with) is not in
its public types. Both are reached here, once, with their types, so the processors and the
workers need no ``type: ignore`` to use them.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, cast

import faust
from mode.types.signals import BaseSignalT

T = TypeVar("T")
log = logging.getLogger(__name__)


class RawProducer(Protocol):
    """The part of aiokafka's producer Brigade uses."""

    async def send(
        self, topic: str, value: bytes | None = None, *, key: bytes | None = None
    ) -> Awaitable[object]:
        """Queue a message; the returned awaitable completes on the broker's ack."""
        ...

    async def partitions_for(self, topic: str) -> set[int]:
        """The topic's partitions, fetching metadata when missing."""
        ...


def attach(app: faust.App, name: str, value: object) -> None:
    """Keep ``value`` on ``app`` as ``app.brigade_<name>``."""
    setattr(app, f"brigade_{name}", value)


def attached(app: faust.App, name: str, kind: type[T]) -> T:
    """What ``attach`` kept under ``name``, checked to be a ``kind``.

    Raises:
        TypeError: nothing of that type was attached.
    """
    value = getattr(app, f"brigade_{name}", None)
    if not isinstance(value, kind):
        raise TypeError(f"app.brigade_{name} is {type(value).__name__}, not {kind.__name__}")
    return value


def raw_producer(app: faust.App) -> RawProducer:
    """The aiokafka producer Faust started for ``app`` (started on first use)."""
    # Not in faust's ProducerT; present on its aiokafka transport's producer.
    producer: RawProducer = cast(Any, app.producer)._ensure_producer()
    return producer


def rewind_uncommitted_partitions(app: faust.App) -> None:
    """After every rebalance, read input partitions the group never committed from the start.

    Faust drops the records it had already fetched when a rebalance interrupts a fetch, and
    then seeks each stream partition back to its committed offset, but a partition with no
    committed offset is not sought at all: its consumer position stays past the dropped
    records, which are never processed by this member. That happens whenever a member dies
    before its first commit on a partition (a processor SIGKILLed seconds after a
    rebalance left 146 of 300 jobs unread on its survivor). ``consumer_auto_offset_reset``
    is ``earliest``, so such a partition is rewound to its first offset here, before Faust
    resumes the streams. Reading again is safe: the processors' events have deterministic
    ids and the workers skip jobs that already finished.
    """

    async def rewind(_sender: Any, /, *_args: Any, signal: BaseSignalT[Any], **_kwargs: Any) -> None:
        # seek_to_committed is on Faust's Consumer, not on its ConsumerT protocol.
        consumer: Any = app.consumer
        changelogs = set(app.tables.changelog_topics)
        committed = await consumer.seek_to_committed()
        never = [tp for tp, offset in committed.items()
                 if offset is None and tp.topic not in changelogs and "__assignor" not in tp.topic]
        if never:
            log.info("rewinding partitions with no committed offset: %s",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(never)))
            for tp, first in (await consumer.earliest_offsets(*never)).items():
                await consumer.seek(tp, first)

    app.on_rebalance_complete.connect(rewind)
