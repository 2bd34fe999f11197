"""The worker Faust app: one agent per pool lane, one following ``brigade.job-events``.

``create_app(settings, pools)`` builds it; there is no module-level app. Agents stay thin:
they move Faust events into ``WorkerRuntime``, which batches (``workers.batching``), executes
(``workers.executor``) and acks per event once the outcome is durable.

Why not ``stream.take()``: it yields values without their events, so a table cannot be
written while handling them (faust-streaming #497) and the batch is acked as a block when
the generator resumes, which also stops the stream from filling the next batch while this
one runs. Iterating ``stream.noack().events()`` keeps every ``Event``: the pure batcher
holds them, several batches run at once, and each message is acked by itself after its
outcome is published. Tables are written only by the job-events agent, inside its own
iteration, where the current event is set.

Co-partitioning: the skip check reads the job's row in the job-state table, which holds
the job-events partitions this process owns. Faust's assignor gives partition N of every
topic with the same partition count to the same member, and every producer keys by job id
with the murmur2 partitioner, so a job's work message and its events land on the same
member, provided work topics and job-events have the same number of partitions;
``create_app`` refuses settings where they differ.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
from collections.abc import Sequence
from typing import Any

import faust
from confluent_kafka import ConsumerGroupTopicPartitions, TopicPartition
from confluent_kafka.admin import OffsetSpec

from brigade.errors import ConfigError
from brigade.kafka.clients import make_admin
from brigade.kafka.streams import attach, raw_producer, restart_streams_after_rebalance
from brigade.kafka.topology import Topology
from brigade.settings import LANES, Settings
from schemas.codec import Codec
from workers.metrics import WorkerMetrics
from workers.postprocess import pipeline_for
from workers.runtime import FaustPublisher, WorkerRuntime

TABLE_NAME = "job-state"
# Below Faust's producer_max_request_size (1,000,000) and the broker's message.max.bytes.
PRODUCER_BATCH_BYTES = 512 * 1024


def app_id(settings: Settings, pools: Sequence[str]) -> str:
    """The consumer group / app id of the worker for ``pools`` (distinct from the processor's)."""
    return Topology(settings).worker_group(pools)


def validate(settings: Settings, pools: Sequence[str]) -> None:
    """Refuse unknown pools and topic layouts that break the co-partitioned skip check."""
    if not pools:
        raise ConfigError("workers need at least one --pool")
    unknown = [p for p in pools if p not in settings.pools]
    if unknown:
        known = sorted(settings.pools)
        raise ConfigError(f"--pool names unknown pools {unknown}; settings.pools has {known}")
    if settings.topics.work_partitions != settings.topics.partitions:
        raise ConfigError(
            "topics.work_partitions must equal topics.partitions: workers read job state from the "
            "job-events partitions co-assigned with their work partitions"
        )


def create_app(
    settings: Settings,
    pools: Sequence[str],
    *,
    store: str = "memory://",
    worker_id: str | None = None,
    metrics: WorkerMetrics | None = None,
    instance: str | None = None,
) -> faust.App:
    """Build the worker app for ``pools``; the caller runs it (``faust.Worker``) and owns it.

    ``instance`` makes the process a static member of the workers' group (Kafka's
    ``group.instance.id``): restarted under the same name, it replaces its dead self and
    takes its partitions back at once instead of after the dead member's session
    (``kafka.session_timeout_s``). Unique per running process (a second process with the
    same name fences the first); ``None`` joins as a dynamic member.
    """
    validate(settings, pools)
    pipelines = {name: pipeline_for(settings.pools[name]) for name in pools}
    topology = Topology(settings)
    app = faust.App(
        app_id(settings, pools),
        broker="kafka://" + settings.kafka.bootstrap,
        store=store,
        topic_replication_factor=settings.topics.replication,
        topic_partitions=settings.topics.partitions,
        web_enabled=False,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        # aiokafka's default 16 KiB batch holds about two outcomes with an inline embedding;
        # a send that finds its partition's batch full waits a whole broker round trip for it
        # to drain, so a batch of 32 outcomes took ~16 sequential round trips.
        producer_max_batch_size=PRODUCER_BATCH_BYTES,
        # A SIGKILLed worker's partitions move to the others after this long (as for the
        # processors); Faust's default keeps them stuck for a minute.
        broker_session_timeout=settings.kafka.session_timeout_s,
        broker_heartbeat_interval=1.0,
        consumer_group_instance_id=instance,
    )
    topics: dict[str, Any] = {}

    def topic(name: str) -> Any:
        if name not in topics:
            topics[name] = app.topic(name, key_serializer="raw", value_serializer="raw")
        return topics[name]

    async def send(name: str, key: bytes, value: bytes) -> None:
        # Straight to the aiokafka producer Faust started, as the processors do (one send path
        # in both apps; Faust's Topic.send adds a FutureMessage, callbacks and sensors per
        # message). Every caller awaits the ack before it acks its input, so nothing here
        # relies on Faust tracking the message.
        ack = await raw_producer(app).send(name, value, key=key)
        await ack

    # Keys are job ids as raw bytes, values JobView dicts (the app's default codecs: raw/json).
    # Rows go to the partition the producer's murmur2 gives the job id, which is the job's
    # job-events and work partition (every producer keys by job id), as for the processors'
    # table. Without use_partitioner Faust checks on every write, until one passes, that the
    # changelog has as many partitions as the event's topic, from the consumer's group
    # metadata snapshot rather than the broker: on a loaded machine a fresh worker's snapshot
    # stayed wrong for minutes while the broker had 6 and 6, every write crashed the
    # job-events agent (PartitionsMismatch) and the whole stack stalled.
    table = app.Table(TABLE_NAME, default=None, partitions=settings.topics.partitions, key_type=bytes,
                      use_partitioner=True)
    runtime = WorkerRuntime(
        settings=settings,
        pools=pools,
        pipelines=pipelines,
        publisher=FaustPublisher(send=send, outcomes=topology.outcomes,
                                 job_events=topology.job_events, codec=Codec()),
        send=send,
        table=table,
        worker_id=worker_id or f"{socket.gethostname()}:{os.getpid()}",
        metrics=metrics or WorkerMetrics(),
    )
    _add_job_events_agent(app, topic(topology.job_events), runtime)
    for pool in pools:
        for lane in LANES:
            _add_work_agent(app, topic(topology.work(pool, lane)), runtime, pool, lane)

    async def _drain(sender: Any, **kwargs: Any) -> None:
        await runtime.stop()

    app.on_before_shutdown.connect(_drain)  # type: ignore[arg-type]  # mode's signal typing

    _connect_rebalance(app, settings, runtime, topology.job_events)

    restart_streams_after_rebalance(app)
    attach(app, "runtime", runtime)  # for the CLI's metrics endpoint
    return app


def _add_job_events_agent(app: faust.App, source: Any, runtime: WorkerRuntime) -> None:
    async def follow_job_events(stream: Any) -> None:
        await runtime.ensure_started()
        async for event in stream.noack().events():
            await runtime.on_job_event(stream, event)

    app.agent(source, name="job-events")(follow_job_events)


def _add_work_agent(app: faust.App, source: Any, runtime: WorkerRuntime, pool: str, lane: str) -> None:
    async def work(stream: Any) -> None:
        await runtime.ensure_started()
        async for event in stream.noack().events():
            await runtime.on_work(pool, lane, stream, event)

    app.agent(source, name=f"work-{pool}-{lane}")(work)


def _connect_rebalance(app: faust.App, settings: Settings, runtime: WorkerRuntime, job_events: str) -> None:
    async def _revoked(sender: Any, revoked: Any, **kwargs: Any) -> None:
        # Faust re-reads revoked partitions from their committed offsets: forget their events.
        runtime.acks.revoke(revoked)
        for tp in revoked:
            if tp.topic == job_events:
                runtime.catchup.revoke(tp.partition)

    app.on_partitions_revoked.connect(_revoked)  # type: ignore[arg-type]  # mode's signal typing

    tasks: set[asyncio.Task[None]] = set()

    async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
        # Work of these partitions waits from now on; the targets are fetched in the
        # background, never inside the rebalance: Faust's consumer thread is busy with it
        # (asking it for high watermarks here hung until the session timed out).
        partitions = [tp.partition for tp in assigned if tp.topic == job_events]
        if not partitions:
            return
        runtime.catchup.pending(partitions)
        task = asyncio.create_task(_set_catchup(settings, runtime, app.conf.id, job_events, partitions))
        tasks.add(task)
        task.add_done_callback(tasks.discard)

    app.on_partitions_assigned.connect(_assigned)  # type: ignore[arg-type]  # mode's signal typing


async def _set_catchup(settings: Settings, runtime: WorkerRuntime, group: str, job_events: str,
                       partitions: list[int]) -> None:
    try:
        committed, ends = await asyncio.to_thread(_offsets, settings, group, job_events, partitions)
    except Exception:
        # Run at once: at worst a finished item reaches the model again.
        logging.getLogger(__name__).warning("job-state catch-up targets unavailable", exc_info=True)
        runtime.catchup.release()
        return
    for partition in partitions:
        runtime.catchup.assign(partition, committed=committed.get(partition, 0), end=ends[partition])


def _offsets(settings: Settings, group: str, topic: str,
             partitions: list[int]) -> tuple[dict[int, int], dict[int, int]]:
    """The group's committed offsets (0 where none) and the end offsets of ``topic``."""
    # One admin client, referenced until both answers are in: a client that is garbage
    # collected first destroys its handle and fails its pending requests.
    admin = make_admin(settings)
    latest = {TopicPartition(topic, p): OffsetSpec.latest() for p in partitions}  # type: ignore[no-untyped-call]
    listed = admin.list_offsets(latest).items()
    ends = {tp.partition: answer.result(timeout=10).offset for tp, answer in listed}
    request = ConsumerGroupTopicPartitions(group, [TopicPartition(topic, p) for p in partitions])
    [future] = admin.list_consumer_group_offsets([request]).values()
    result = future.result(timeout=10)
    committed = {tp.partition: max(tp.offset, 0) for tp in result.topic_partitions}
    return committed, ends
