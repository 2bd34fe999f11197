"""The processors' Faust app, built by a factory from explicit settings.

``create_app(settings)`` wires one job-processor agent (commands + outcomes, keyed by job
id), its state table, the lease/deadline timer and the delay tiers. Nothing is created at
import time: tests build as many apps as they like, each with its own settings.
"""

from __future__ import annotations

import asyncio
import importlib.util
import logging
import os
import sys
from collections.abc import Awaitable
from typing import Any

import faust
import mode

from brigade.kafka.streams import attach, faust_worker, raw_producer, restart_streams_after_rebalance
from brigade.kafka.take import take_ready
from brigade.kafka.topology import PROCESSOR_TABLE, Topology
from brigade.settings import Settings
from processors.delay import DelayTiers
from processors.jobs import Incoming, JobProcessor
from processors.metrics import Metrics

log = logging.getLogger(__name__)
PRODUCER_BATCH_BYTES = 512 * 1024  # below the broker's 1 MiB message.max.bytes
EXIT_UNCOMMITTED = 70  # exit status of a processor that stopped mid-batch without committing


def default_store() -> str:
    """``rocksdb://`` where rocksdict is installed, else ``memory://`` (restored from the changelog)."""
    return "rocksdb://" if importlib.util.find_spec("rocksdict") is not None else "memory://"


def create_app(settings: Settings, *, store: str | None = None, node: str = "processor-0",
               batch_max: int = 500, batch_within_s: float = 0.005, delay_tiers: bool = True,
               metrics: Metrics | None = None, instance: str | None = None) -> faust.App:
    """Build the processors' Faust app for ``settings``.

    Args:
        store: Faust table store URL; ``memory://`` in tests, ``rocksdb://`` in production.
        node: this process's name; its RocksDB files live under ``<data_dir>/processors/<node>``.
        batch_max, batch_within_s: the agent decides up to ``batch_max`` inputs at once; a
            batch closes when nothing more is buffered, and after ``batch_within_s`` at most.
        delay_tiers: also run the delay-tier agent in this process.
        metrics: where to count; a fresh registry by default (``app.brigade_metrics``).
        instance: static member name in the processors' group and the delay tiers' group
            (Kafka's ``group.instance.id``): restarted under it, the process replaces its dead
            self and takes its partitions back at once. Unique per running process; ``None``
            joins as a dynamic member, whose replacement waits out the dead one's session
            (``kafka.session_timeout_s``).
    """
    topology = Topology(settings)
    metrics = metrics or Metrics()
    datadir = settings.path("processors", node)
    datadir.parent.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        topology.processor_group,
        broker=f"kafka://{settings.kafka.bootstrap}",
        store=store or default_store(),
        datadir=str(datadir),
        topic_replication_factor=settings.topics.replication,
        topic_partitions=settings.topics.partitions,
        web_enabled=False,
        autodiscover=False,
        processing_guarantee="at_least_once",
        producer_acks=-1,
        consumer_auto_offset_reset="earliest",
        broker_commit_interval=1.0,
        # A SIGKILLed processor's partitions move after this long: it bounds recovery time.
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=1.0,
        consumer_group_instance_id=instance,
        # A batch's effects are sent together and the agent waits for their acks. aiokafka
        # keeps one request in flight per broker and, once a partition's batch is full,
        # makes send() wait for it to drain: with the 16 KiB default a 500-input batch
        # waited for several broker round trips. One batch per partition holds it all.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
    )
    table = app.Table(PROCESSOR_TABLE, partitions=settings.topics.partitions, key_type=bytes,
                      value_type=bytes, use_partitioner=True, default=None)
    processor = JobProcessor(settings=settings, table=table, send=_sender(app), metrics=metrics)
    _install_agent(app, topology, processor, table, batch_max, batch_within_s)
    _install_timer(app, settings, processor)

    @table.on_recover
    async def _reassigned() -> None:
        inputs = {topology.commands, topology.outcomes}
        processor.reassigned({tp.partition for tp in app.assignor.assigned_actives() if tp.topic in inputs})

    if delay_tiers:
        _install_delay(app, DelayTiers(settings=settings, metrics=metrics, instance=instance,
                                       on_failure=lambda _exc: exit_uncommitted()))
    restart_streams_after_rebalance(app)
    attach(app, "processor", processor)
    attach(app, "metrics", metrics)
    return app


def _sender(app: faust.App) -> Any:
    # Straight to the aiokafka producer Faust started (the one its commit flushes), not
    # through Topic.send: Faust's path (FutureMessage, callbacks, sensors) cost several
    # times the send itself. The agent awaits every returned future before it writes
    # the table, so nothing here relies on Faust tracking these messages.
    async def send(name: str, key: bytes, value: bytes) -> Awaitable[object]:
        return await raw_producer(app).send(name, value, key=key)

    return send


def _install_agent(app: faust.App, topology: Topology, processor: JobProcessor, table: Any,
                   batch_max: int, batch_within_s: float) -> None:
    source = app.topic(topology.commands, topology.outcomes, key_serializer="raw", value_serializer="raw")

    @app.agent(source, name="job-processor")
    async def job_processor(stream: Any) -> None:
        await _changelog_metadata(app, table)
        processor.command_partitions = len(await raw_producer(app).partitions_for(topology.commands))
        # take_ready, not take_events: an input that finds the processor idle is decided at
        # once instead of waiting for the window's next tick (see brigade.kafka.take).
        async for events in take_ready(stream, batch_max, within=batch_within_s):
            await _decide_or_exit(processor, events)


async def _decide_or_exit(processor: JobProcessor, events: Any) -> None:
    # take_ready acks the whole batch in a `finally` when the loop body raises, and Faust
    # commits on an agent error and restarts the agent: a batch whose effects were not all
    # acked, or whose states were not written, would be committed and its inputs lost. Any
    # failure (or cancellation) in the middle of a batch therefore ends the process at
    # once, before Faust can ack or commit; the supervisor restarts it and the inputs are
    # decided again from the last committed offset (deterministic ids absorb repeats).
    try:
        await processor.process([_incoming(event) for event in events])
    except BaseException:
        log.critical("batch of %d inputs failed; exiting without committing it", len(events),
                     exc_info=True)
        exit_uncommitted()


def exit_uncommitted() -> None:
    """End the process now: no Faust shutdown, so no ack, commit or table write."""
    logging.shutdown()
    sys.stderr.flush()
    os._exit(EXIT_UNCOMMITTED)


async def _changelog_metadata(app: faust.App, table: Any) -> None:
    # States are written after a batch's effects are acked, outside Faust's event context,
    # so the table picks the changelog partition with the producer's partitioner, which
    # needs the topic's metadata. A fresh producer may not have it yet (seen on a first
    # start under load: partitions_for_topic() is None and the agent crashes in a loop).
    await raw_producer(app).partitions_for(table.changelog_topic.get_topic_name())


def _incoming(event: Any) -> Incoming:
    message = event.message
    return Incoming(topic=message.topic, partition=message.partition, offset=message.offset,
                    key=message.key, value=message.value or b"", timestamp=message.timestamp)


def _install_timer(app: faust.App, settings: Settings, processor: JobProcessor) -> None:
    @app.timer(settings.retry.lease_check_interval_s, name="lease-check")  # type: ignore[untyped-decorator]
    async def lease_check() -> None:
        await processor.check()


def _install_delay(app: faust.App, delay: DelayTiers) -> None:
    @app.service
    class DelayService(mode.Service):
        """Runs the delay tiers' consumer thread for as long as the worker runs."""

        async def on_start(self) -> None:
            delay.start()

        async def on_stop(self) -> None:
            await asyncio.to_thread(delay.stop)


def run_worker(app: faust.App, *, loglevel: str = "info") -> None:
    """Run a Faust worker for ``app`` until SIGINT/SIGTERM (blocks)."""
    faust_worker(app, loglevel=loglevel).execute_from_commandline()
