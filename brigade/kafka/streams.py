"""The typed edge of Faust: what Brigade keeps on an app, and the aiokafka producer under it.

Faust's ``App`` has no place for an application's own objects, and the producer Brigade sends
through directly (``_ensure_producer()``, the aiokafka client Faust commits with) is not in
its public types. Both are reached here, once, with their types, so the processors and the
workers need no ``type: ignore`` to use them.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any, Protocol, TypeVar, cast

import faust

T = TypeVar("T")


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
