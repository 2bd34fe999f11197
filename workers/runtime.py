"""The worker's moving parts, between Faust events and the pure/async pieces.

``WorkerRuntime`` owns the model clients, executors, lane runners and the callback sender
of one worker process; ``workers.app`` wires its methods into Faust agents. Acks are per
event and manual (``stream.noack()``): a work item is acked only after its final outcome is
durable in ``brigade.outcomes``; a terminal job event is acked only after its callback
delivery finished. Events finish out of order, so they reach Faust through an ``AckGate``
that acks each partition's contiguous prefix of finished events only: a crash redelivers
every unfinished message (and perhaps some finished after it), never skips one.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from brigade.errors import DecodeError
from brigade.ids import event_id
from brigade.settings import Settings
from schemas.codec import Codec
from schemas.records import (
    DeadLetter,
    JobCancelled,
    JobDeadLettered,
    JobFailed,
    JobSucceeded,
    WorkItem,
    WorkOutcome,
)
from workers.acks import AckGate
from workers.batching import Batch, BatchPolicy, estimate_tokens
from workers.breaker import CircuitRecord
from workers.callbacks import CallbackAttempt, CallbackSender, backoff
from workers.catchup import CatchUp
from workers.executor import PoolExecutor
from workers.jobstate import IGNORED_TYPES, JobView, fold, should_send_callback
from workers.lanes import LaneRunner, Slots
from workers.metrics import WorkerMetrics
from workers.models import make_client
from workers.postprocess import Pipeline
from workers.results import ResultStore

log = logging.getLogger(__name__)
Send = Callable[[str, bytes, bytes], Any]  # (topic, key, value) -> awaitable delivery


@dataclass(frozen=True, slots=True)
class Pending:
    """A work item waiting in a batch, with what is needed to ack its Kafka message."""

    item: WorkItem
    event: Any  # faust.EventT
    stream: Any  # faust.StreamT


class FaustPublisher:
    """Publishes records and waits until the broker has them (acks=all)."""

    def __init__(self, *, send: Send, outcomes: str, job_events: str, codec: Codec) -> None:
        self._send = send
        self._outcomes = outcomes
        self._job_events = job_events
        self._codec = codec

    async def outcome(self, outcome: WorkOutcome) -> None:
        """Publish to ``brigade.outcomes`` keyed by job id."""
        await self._send(self._outcomes, outcome.job_id.encode(), self._codec.encode(outcome))

    async def circuit(self, record: CircuitRecord, *, key: str) -> None:
        """Publish a circuit event to ``brigade.job-events``."""
        await self._send(self._job_events, key.encode(), self._codec.encode(record))


class WorkerRuntime:
    """Everything one worker process runs for its pools."""

    def __init__(
        self,
        *,
        settings: Settings,
        pools: Sequence[str],
        pipelines: dict[str, Pipeline],
        publisher: FaustPublisher,
        send: Send,
        table: Any,  # faust Table: job id (bytes) -> JobView JSON
        worker_id: str,
        metrics: WorkerMetrics,
    ) -> None:
        self.settings = settings
        self.pools = list(pools)
        self.pipelines = pipelines
        self.publisher = publisher
        self._send = send
        self.table = table
        self.worker_id = worker_id
        self.metrics = metrics
        self.codec = Codec(metrics=metrics.registry)
        self.acks = AckGate()
        self.catchup = CatchUp()
        self.executors: dict[str, PoolExecutor] = {}
        self.lanes: dict[tuple[str, str], LaneRunner[Pending]] = {}
        self.callbacks: CallbackSender | None = None
        self._callbacks_in_flight: dict[str, asyncio.Task[None]] = {}
        # Per job with a delivery in flight: every read of its terminal event, acked together
        # once the delivery ends.
        self._callback_events: dict[str, list[Any]] = {}
        self._started = asyncio.Lock()
        self._ready = False

    # ---- lifecycle ----------------------------------------------------------------------

    async def ensure_started(self) -> None:
        """Create clients and lane runners once, inside the running loop."""
        async with self._started:
            if self._ready:
                return
            results = ResultStore(url=self.settings.object_store_url,
                                  inline_threshold=self.settings.inline_threshold_bytes,
                                  max_payload_bytes=self.settings.max_payload_bytes)
            for name in self.pools:
                self._start_pool(name, results)
            self.callbacks = CallbackSender(settings=self.settings.callbacks)
            self._ready = True

    def _start_pool(self, name: str, results: ResultStore) -> None:
        pool = self.settings.pools[name]
        self.executors[name] = PoolExecutor(
            name=name, pool=pool, client=make_client(pool, builtin=self.settings.builtin_model),
            publisher=self.publisher,
            lookup=self.view, results=results, pipeline=self.pipelines[name],
            metrics=self.metrics, worker_id=self.worker_id,
        )
        slots = Slots.for_concurrency(pool.max_concurrency)
        for lane in ("interactive", "batch"):
            lane_settings = pool.lane(lane)
            runner: LaneRunner[Pending] = LaneRunner(
                policy=BatchPolicy.from_lane(lane_settings),
                execute=self._executor_for(name, lane),
                pool_slots=slots.pool,
                lane_slots=slots.batch if lane == "batch" else None,
                # Room for the open batch plus one closed batch per concurrency slot.
                max_in_flight=lane_settings.max_batch_size * (pool.max_concurrency + 1),
            )
            runner.start()
            self.lanes[(name, lane)] = runner

    async def stop(self) -> None:
        """Run what is open, wait for running batches and callbacks, close clients."""
        for runner in self.lanes.values():
            await runner.stop(drain=True)
        if self._callbacks_in_flight:
            await asyncio.gather(*self._callbacks_in_flight.values(), return_exceptions=True)
        for executor in self.executors.values():
            await executor.client.aclose()
        if self.callbacks is not None:
            await self.callbacks.aclose()

    # ---- work items ---------------------------------------------------------------------

    def view(self, job_id: str) -> JobView | None:
        """The job's latest state from the table (``None`` when unknown here)."""
        data = self.table.get(job_id.encode())
        return None if data is None else JobView.from_json(data)

    async def on_work(self, pool: str, lane: str, stream: Any, event: Any) -> None:
        """Decode one work message and hand it to its lane (dead-letter what does not decode)."""
        self.acks.track(stream, event)
        try:
            item = self.codec.decode_as(event.value, WorkItem)
        except DecodeError as exc:
            await self._dead_letter(event, exc)
            await self.acks.finish(event)
            return
        # A redelivered item may have finished: let the table fold its job's events first.
        await self.catchup.wait(event.message.partition)
        spec = item.spec
        tokens = estimate_tokens(spec.input, payload_size=spec.payload_size)
        size = len(spec.input.encode()) if spec.input is not None else spec.payload_size
        runner = self.lanes[(pool, lane)]
        await runner.submit(Pending(item, event, stream), tokens=tokens, size_bytes=size)
        self.metrics.in_flight.labels(pool, lane).set(runner.in_flight)

    def _executor_for(self, pool: str, lane: str) -> Callable[[Batch[Pending]], Any]:
        async def execute(batch: Batch[Pending]) -> None:
            self.metrics.batch_wait.labels(pool, lane).observe(max(0.0, time.monotonic() - batch.opened_at))
            await self.executors[pool].execute([p.item for p in batch.items], lane=lane)
            # Outcomes are durable: only now may Kafka forget these messages.
            for pending in batch.items:
                await self.acks.finish(pending.event)
            self.metrics.in_flight.labels(pool, lane).set(self.lanes[(pool, lane)].in_flight)

        return execute

    async def _dead_letter(self, event: Any, exc: DecodeError) -> None:
        message = event.message
        letter = DeadLetter(
            source_topic=message.topic, partition=message.partition, offset=message.offset,
            raw=exc.raw, reason=exc.reason, occurred_at=datetime.now(UTC), key=message.key,
        )
        await self._send(self.settings.topic("dlq"), message.key or b"", self.codec.encode(letter))

    # ---- job events: the table and callbacks ----------------------------------------------

    async def on_job_event(self, stream: Any, event: Any) -> None:
        """Fold one job event into the table; start the callback when this worker owns it."""
        self.acks.track(stream, event)
        await self._fold_event(event)
        self.catchup.folded(event.message.partition, event.message.offset)

    async def _fold_event(self, event: Any) -> None:
        if self.codec.record_type(event.value) in IGNORED_TYPES:
            await self.acks.finish(event)
            return
        try:
            record = self.codec.decode(event.value)
        except DecodeError:
            # The processor owns job-events and its dead letters; a reader just moves on.
            log.warning("undecodable job event at %s", event.message.tp)
            await self.acks.finish(event)
            return
        key = event.key
        before = self.view(key.decode()) if isinstance(key, bytes) else None
        after = fold(before, record)
        if after is None:
            await self.acks.finish(event)
            return
        if after != before:
            self.table[key] = after.to_json()
        # Decided on every read, changed or not: the table may already hold this terminal
        # event (restored from the changelog) when a killed worker never delivered it.
        envelope = getattr(record, "envelope", None)
        event_id = str(envelope.event_id) if envelope is not None else ""
        default = self.settings.default_pool
        if should_send_callback(after, event_id, my_pools=self.pools, default_pool=default):
            await self._start_callback(after, record, event)
            return
        await self.acks.finish(event)

    async def _start_callback(self, view: JobView, record: object, event: Any) -> None:
        waiting = self._callback_events.get(view.job_id)
        if waiting is not None:
            # A delivery is in flight (this is a copy read again after a rebalance, or a
            # re-emitted event): the copy is acked with that delivery, never before it, or a
            # crash before the delivery ends would leave the log committed past every copy.
            waiting.append(event)
            return
        self._callback_events[view.job_id] = [event]
        task = asyncio.create_task(self._deliver(view, record))
        self._callbacks_in_flight[view.job_id] = task
        task.add_done_callback(lambda _: self._callbacks_in_flight.pop(view.job_id, None))

    async def _deliver(self, view: JobView, record: object) -> None:
        assert self.callbacks is not None and view.callback_url is not None

        async def report(attempt: CallbackAttempt) -> None:
            self.metrics.callbacks.labels(str(attempt.ok).lower()).inc()
            await self.publisher.outcome(callback_outcome(view, attempt, self.worker_id))

        failures = 0
        while True:
            try:
                await self.callbacks.deliver(
                    url=view.callback_url, tenant_id=view.tenant_id, delivery_id=view.job_id,
                    payload=callback_payload(view, record), on_attempt=report,
                )
                break
            except Exception:
                # Delivery is at-least-once: try again rather than leave the event unacked
                # with nobody sending it until the next rebalance.
                failures += 1
                log.exception("callback of %s failed unexpectedly (%d); trying again", view.job_id, failures)
                s = self.settings.callbacks
                await asyncio.sleep(backoff(failures, base=s.backoff_base_s, cap=s.backoff_cap_s))
        for done in self._callback_events.pop(view.job_id, []):
            await self.acks.finish(done)


def callback_payload(view: JobView, record: object) -> dict[str, Any]:
    """The JSON body POSTed to ``callbackUrl``: the job's final state."""
    body: dict[str, Any] = {
        "jobId": view.job_id, "tenantId": view.tenant_id, "status": view.status, "attempt": view.attempt,
    }
    envelope = getattr(record, "envelope", None)
    if envelope is not None:
        body["occurredAt"] = envelope.occurred_at.isoformat()
    if isinstance(record, JobSucceeded):
        body["model"] = record.model
        body["result"] = json.loads(record.result_inline) if record.result_inline else None
        body["resultRef"] = record.result_ref
        body["resultSha256"] = record.result_sha256
    elif isinstance(record, JobFailed):
        body["error"] = record.reason
        body["errorClass"] = record.error_class
    elif isinstance(record, JobDeadLettered):
        body["error"] = record.reason
        body["errorClass"] = "dead_lettered"
    elif isinstance(record, JobCancelled):
        body["error"] = record.reason
    return body


def callback_outcome(view: JobView, attempt: CallbackAttempt, worker: str) -> WorkOutcome:
    """The ``callback`` WorkOutcome recording one delivery attempt."""
    return WorkOutcome(
        outcome_id=event_id(view.job_id, "outcome:callback", view.attempt, str(attempt.number)),
        job_id=view.job_id, tenant_id=view.tenant_id, attempt=view.attempt, kind="callback",
        occurred_at=datetime.now(UTC), worker=worker, callback_attempt=attempt.number,
        callback_url=attempt.url, callback_status=attempt.status, callback_ok=attempt.ok, error=attempt.error,
    )
