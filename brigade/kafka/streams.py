"""The typed edge of Faust: what Brigade keeps on an app, and the aiokafka producer under it.

Faust's ``App`` has no place for an application's own objects, and the producer Brigade sends
through directly (``_ensure_producer()``, the aiokafka client Faust commits with) is not in
its public types. Both are reached here, once, with their types, so the processors and the
workers need no ``type: ignore`` to use them.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
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


def faust_worker(app: faust.App, *, loglevel: str) -> faust.Worker:
    """A Faust worker for ``app`` that logs at ``loglevel`` and builds no record below it.

    At WARN and above Faust keeps a terminal spinner that sets the root logger to DEBUG so
    it can spin on every record: every aiokafka, Faust and httpcore debug call then built a
    LogRecord (2.7 s of 15 s of a processor's CPU under cProfile; 6 % of a worker's busy
    samples under py-spy). Nothing here needs the spinner.
    """
    worker = faust.Worker(app, loglevel=loglevel)
    worker.spinner = None
    return worker


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


def restart_streams_after_rebalance(app: faust.App) -> None:
    """After every rebalance, read each input partition again from its committed offset, or
    from its first offset when the group never committed it, and lose no record on the way.

    Faust drops records it has already fetched, with the client's position past them, in two
    places: during a rebalance's recovery the client keeps fetching (to read changelogs) while
    input partitions are paused in Faust only, and what the fetch returns for them is dropped;
    and once the table is restored Faust resumes input partitions and seeks them *before* it
    resumes flow control, which clears every stream queue, so records delivered in between
    are thrown away (a replacement worker left 9 of 30 work items unread that way). Faust then
    seeks only partitions that have a committed offset, so dropped records of the others are
    never processed by this member (a processor killed before its first commit left 146 of
    300 jobs unread).

    So when a rebalance completes, before Faust resumes the input partitions, they are paused
    in the Kafka client itself, which neither fetches nor returns records of a paused
    partition, and those with no committed offset are sought to their first offset
    (``consumer_auto_offset_reset`` is ``earliest``); Faust's own seek puts the others at
    their committed offset. They are resumed once the rebalance has fully ended: flow
    resumed, queues cleared. Reading again is safe: the processors' events have
    deterministic ids and the workers skip jobs that already finished.
    """

    async def hold_and_rewind(_sender: Any, /, *_args: Any, signal: BaseSignalT[Any], **_kw: Any) -> None:
        await _pause_inputs(app)
        # seek_to_committed is on Faust's Consumer, not on its ConsumerT protocol.
        consumer: Any = app.consumer
        committed = await consumer.seek_to_committed()
        never = [tp for tp, offset in committed.items() if offset is None and _is_input(app, tp)]
        if never:
            log.info("rewinding partitions with no committed offset: %s",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in sorted(never)))
            for tp, first in (await consumer.earliest_offsets(*never)).items():
                await consumer.seek(tp, first)

    app.on_rebalance_complete.connect(hold_and_rewind)
    app.sensors.add(_ResumeInputs(app))


class _ResumeInputs(faust.Sensor):
    """Resumes the input partitions ``hold_and_rewind`` paused, once a rebalance has ended.

    Faust calls sensors' ``on_rebalance_end`` after it has cleared the stream queues and
    resumed the flow: the first point where records fetched again are delivered for good.
    """

    def __init__(self, app: faust.App) -> None:
        super().__init__()
        self._app = app
        self._resuming: set[asyncio.Task[None]] = set()

    def on_rebalance_end(self, app: Any, state: dict[Any, Any]) -> None:
        task = asyncio.ensure_future(_resume_inputs(self._app))
        self._resuming.add(task)
        task.add_done_callback(self._resuming.discard)


def _is_input(app: faust.App, tp: Any) -> bool:
    return tp.topic not in app.tables.changelog_topics and "__assignor" not in tp.topic


def _client_call(app: faust.App, action: Callable[[Any], None]) -> Awaitable[None]:
    """Run ``action(client)`` on Faust's aiokafka consumer, inside the thread that owns it."""
    # Faust runs aiokafka in its own thread and event loop; neither is in its public types.
    thread: Any = cast(Any, app.consumer)._thread
    client = thread._ensure_consumer()

    async def run() -> None:
        action(client)

    result: Awaitable[None] = thread.call_thread(run)
    return result


async def _pause_inputs(app: faust.App) -> None:
    def pause(client: Any) -> None:
        inputs = [tp for tp in client.assignment() if _is_input(app, tp)]
        if inputs:
            client.pause(*inputs)

    await _client_call(app, pause)


async def _resume_inputs(app: faust.App) -> None:
    def resume(client: Any) -> None:
        held = [tp for tp in client.paused() if _is_input(app, tp)]
        if held:
            client.resume(*held)

    try:
        await _client_call(app, resume)
    except Exception:
        # A consumer stopping or rebalancing again: the next rebalance pauses and resumes anew.
        log.warning("could not resume input partitions after a rebalance", exc_info=True)
