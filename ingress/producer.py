"""Publishing commands to ``brigade.commands``: the API's publisher and the producer SDK.

``CommandPublisher`` owns one confluent-kafka producer (idempotent, ``acks=all``) and a
thread that serves its delivery reports, so ``publish`` returns a future that completes
when the broker has the message durably; async callers await it without blocking the loop.

``JobProducer`` is the SDK for Python services that skip HTTP: the same validation,
deterministic job ids and oversize offload as the API, batching through the client's
``linger.ms``, and a delivery-report future per job::

    with JobProducer(settings=settings, tenant_id="acme") as producer:
        receipts = [producer.submit({"input": "hello"}) for _ in range(10)]
        producer.flush()
        print([r.result().job_id for r in receipts])
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import deque
from collections.abc import Iterable, Mapping
from concurrent.futures import Future
from dataclasses import dataclass
from functools import partial
from types import TracebackType
from typing import Any

from confluent_kafka import KafkaException, Message
from confluent_kafka import Producer as KafkaProducer

from brigade.errors import KafkaError
from brigade.kafka.clients import NOT_IDEMPOTENT, producer_config
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.admission import CONFLICT_MESSAGE, IdempotencyConflict, Ledger, is_repeat, offload
from ingress.claims import ClaimStore
from ingress.commands import JobValidationError, PreparedJob, cancel_command, parse_request, prepare
from ingress.models import FieldError, JobRequest
from schemas.codec import Codec
from schemas.records import CancelJob, SubmitJob

_BUFFER_RETRY_S = 0.005
# What the poll thread hands to an event loop: a future and its outcome (None: just resolve).
_Ready = tuple[asyncio.Future[Any], "Delivery | BaseException | None"]


@dataclass(frozen=True, slots=True, kw_only=True)
class Delivery:
    """Where the broker stored a message."""

    topic: str
    partition: int
    offset: int


@dataclass(frozen=True, slots=True, kw_only=True)
class Receipt:
    """A job durably in the commands topic."""

    job_id: str
    payload_sha256: str
    delivery: Delivery


class JobConflict(JobValidationError):
    """The same idempotency key was used with a different payload."""

    def __init__(self, job_id: str) -> None:
        super().__init__(
            [
                FieldError(
                    loc=["idempotencyKey"],
                    field="idempotencyKey",
                    msg=CONFLICT_MESSAGE,
                    type="conflict",
                )
            ]
        )
        self.job_id = job_id


class CommandPublisher:
    """One durable producer plus the thread that serves its delivery reports.

    Async callers get their acks without a polling delay: ``poll`` returns as soon as
    reports arrive (its timeout only bounds an idle wait), the reports it served are
    collected, and each event loop is woken once per poll with all of them
    (``call_soon_threadsafe``), not once per message.
    """

    def __init__(self, *, settings: Settings, poll_interval_s: float = 0.05, **overrides: Any) -> None:
        self.topic = Topology(settings).commands
        self._codec = Codec()
        self._producer = KafkaProducer(producer_config(settings, **overrides))
        self._poll_interval_s = poll_interval_s
        self._ready: deque[_Ready] = deque()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._serve_reports, name="command-publisher", daemon=True)
        self._thread.start()

    def _serve_reports(self) -> None:
        while not self._stopping.is_set():
            self._producer.poll(self._poll_interval_s)
            self._hand_over()

    def _hand_over(self) -> None:
        """Pass the collected async outcomes to their loops: one wake-up per loop."""
        by_loop: dict[asyncio.AbstractEventLoop, list[_Ready]] = {}
        while True:
            try:  # popleft, not a length check: flush() may hand over from another thread
                ready = self._ready.popleft()
            except IndexError:
                break
            by_loop.setdefault(ready[0].get_loop(), []).append(ready)
        for loop, items in by_loop.items():
            with contextlib.suppress(RuntimeError):  # the loop is closed: nobody waits any more
                loop.call_soon_threadsafe(_settle_all, items)

    def _report_async(self, future: asyncio.Future[Any], err: Any, msg: Message) -> None:
        # Runs in whichever thread polls; only collects (asyncio futures are not thread-safe).
        outcome = KafkaError(f"delivery failed: {err}") if err is not None else _delivery(msg)
        self._ready.append((future, outcome))

    def _produce_now(self, value: bytes, key: str, callback: Any) -> None:
        self._producer.produce(self.topic, value=value, key=key.encode(), on_delivery=callback)

    def publish(self, record: SubmitJob | CancelJob, *, key: str) -> Future[Delivery]:
        """Queue ``record`` keyed by ``key``; the future completes on the broker's ack.

        Raises:
            BufferError: the client's local queue is full (callers back off and retry).
        """
        future: Future[Delivery] = Future()
        self._producer.produce(
            self.topic,
            value=self._codec.encode(record),
            key=key.encode(),
            on_delivery=lambda err, msg: _settle(future, err, msg),
        )
        return future

    def publish_blocking(
        self, record: SubmitJob | CancelJob, *, key: str, timeout_s: float = 30.0
    ) -> Future[Delivery]:
        """``publish`` that waits (briefly, repeatedly) while the local queue is full."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return self.publish(record, key=key)
            except BufferError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(_BUFFER_RETRY_S)

    async def publish_async(
        self, record: SubmitJob | CancelJob, *, key: str, timeout_s: float = 30.0
    ) -> Delivery:
        """Publish and await the broker's ack without blocking the event loop.

        Raises:
            KafkaError: the broker did not take the message.
        """
        future: asyncio.Future[Delivery] = asyncio.get_running_loop().create_future()
        value = self._codec.encode(record)
        await self._produce_async(value, key, partial(self._report_async, future), timeout_s)
        return await future

    async def publish_many_async(
        self, items: list[tuple[SubmitJob | CancelJob, str]], *, timeout_s: float = 30.0
    ) -> list[Delivery | BaseException]:
        """Publish many records (the client batches them) and await every ack; per-item outcomes.

        One completion for the whole batch instead of a future per message: at thousands of
        jobs per request the per-message futures were a measurable share of the cost.
        """
        done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        batch = _Batch(len(items), done, self._ready)
        encode = self._codec.encode
        for index, (record, key) in enumerate(items):
            callback = partial(batch.report, index)
            try:
                self._produce_now(encode(record), key, callback)
            except BufferError:
                await self._produce_async(encode(record), key, callback, timeout_s)
        if items:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(asyncio.shield(done), timeout_s)
        return batch.outcomes

    async def _produce_async(self, value: bytes, key: str, callback: Any, timeout_s: float) -> None:
        """Produce, sleeping (without blocking the loop) while the local queue is full."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self._produce_now(value, key, callback)
                return
            except BufferError as exc:
                if time.monotonic() > deadline:
                    raise KafkaError("the producer's local queue stayed full") from exc
                await asyncio.sleep(_BUFFER_RETRY_S)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding deliveries; the number still pending."""
        pending: int = self._producer.flush(timeout_s)
        self._hand_over()  # flush served reports in this thread
        return pending

    def reachable(self, timeout_s: float = 2.0) -> set[str]:
        """The broker's topic names (raises KafkaError when it does not answer)."""
        try:
            return set(self._producer.list_topics(timeout=timeout_s).topics)
        except KafkaException as exc:
            raise KafkaError(f"broker unreachable: {exc}") from exc

    def close(self, timeout_s: float = 30.0) -> None:
        """Flush and stop the report thread. Idempotent."""
        if self._stopping.is_set():
            return
        self.flush(timeout_s)
        self._stopping.set()
        self._thread.join(timeout=max(1.0, self._poll_interval_s * 4))


class _Batch:
    """Outcomes of many messages; its future resolves when the last report is in."""

    def __init__(self, size: int, done: asyncio.Future[None], ready: deque[_Ready]) -> None:
        self.outcomes: list[Delivery | BaseException] = [KafkaError("no delivery report in time")] * size
        self._remaining = size
        self._done = done
        self._ready = ready
        self._lock = threading.Lock()  # flush() may serve reports in another thread than the poller

    def report(self, index: int, err: Any, msg: Message) -> None:
        """Record one message's outcome (called by the producer's poll)."""
        self.outcomes[index] = KafkaError(f"delivery failed: {err}") if err is not None else _delivery(msg)
        with self._lock:
            self._remaining -= 1
            last = self._remaining == 0
        if last:
            self._ready.append((self._done, None))


def _settle_all(items: list[_Ready]) -> None:
    """Complete futures on their loop (scheduled from the poll thread)."""
    for future, outcome in items:
        if future.done():
            continue
        if isinstance(outcome, BaseException):
            future.set_exception(outcome)
        else:
            future.set_result(outcome)


def _delivery(msg: Message) -> Delivery:
    return Delivery(topic=msg.topic() or "", partition=msg.partition() or 0, offset=msg.offset() or 0)


def _settle(future: Future[Delivery], err: Any, msg: Message) -> None:
    if future.done():
        return
    if err is not None:
        future.set_exception(KafkaError(f"delivery failed: {err}"))
    else:
        future.set_result(
            Delivery(topic=msg.topic() or "", partition=msg.partition() or 0, offset=msg.offset() or 0)
        )


class JobProducer:
    """The producer SDK: publish validated jobs for one tenant straight to the commands topic."""

    def __init__(
        self,
        *,
        settings: Settings,
        tenant_id: str,
        allow_private_callbacks: bool = False,
        publisher: CommandPublisher | None = None,
        remember: int = 100_000,
    ) -> None:
        if not tenant_id:
            raise ValueError("JobProducer needs a tenant_id")
        self._settings = settings
        self._tenant_id = tenant_id
        self._allow_private = allow_private_callbacks
        self._owns_publisher = publisher is None
        # Not idempotent, as the API's producers (see NOT_IDEMPOTENT). One request in flight
        # keeps a job's submit and cancel in the order they were sent, which idempotence
        # used to guarantee.
        self._publisher = publisher or CommandPublisher(
            settings=settings, **NOT_IDEMPOTENT, **{"max.in.flight.requests.per.connection": 1},
        )
        self._ledger = Ledger(capacity=remember)
        self._claims = ClaimStore(settings.object_store_url)

    def prepare(
        self, request: JobRequest | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> PreparedJob:
        """Validate and build the job without publishing it.

        Raises:
            JobValidationError: the request is invalid.
            JobConflict: this producer already sent the key with another payload.
        """
        job = prepare(
            parse_request(request),
            settings=self._settings,
            tenant_id=self._tenant_id,
            idempotency_key=idempotency_key,
            allow_private_callbacks=self._allow_private,
        )
        try:
            is_repeat(job, self._ledger.known(self._tenant_id, job.job_id))
        except IdempotencyConflict as exc:
            raise JobConflict(job.job_id) from exc
        return job

    def _send(self, job: PreparedJob) -> Future[Receipt]:
        if job.spec.idempotency_key is not None:
            # The same durable claim as the API's, so a key is held to one payload whichever
            # process (API or producer) sees it first.
            claim = self._claims.claim(self._tenant_id, job.job_id, job.payload_hash)
            if claim.payload_hash != job.payload_hash:
                raise JobConflict(job.job_id)
        offload(job)
        delivery = self._publisher.publish_blocking(job.command(), key=job.job_id)
        self._ledger.remember(self._tenant_id, [job])
        return _map_future(
            delivery, lambda d: Receipt(job_id=job.job_id, payload_sha256=job.payload_hash, delivery=d)
        )

    def submit(
        self, request: JobRequest | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Future[Receipt]:
        """Validate and publish one job; the future completes on the broker's ack.

        Raises:
            JobValidationError: the request is invalid.
            JobConflict: the key was already used with another payload (here or through the API).
        """
        return self._send(self.prepare(request, idempotency_key=idempotency_key))

    def submit_many(self, requests: Iterable[JobRequest | Mapping[str, Any]]) -> list[Future[Receipt]]:
        """Publish many jobs (the client batches them); one future each, in order."""
        return [self.submit(request) for request in requests]

    async def submit_async(
        self, request: JobRequest | Mapping[str, Any], *, idempotency_key: str | None = None
    ) -> Receipt:
        """``submit`` for async code: awaits the delivery report."""
        return await asyncio.wrap_future(self.submit(request, idempotency_key=idempotency_key))

    def cancel(self, job_id: str, *, reason: str | None = None) -> Future[Delivery]:
        """Ask the job processor to cancel one of this tenant's jobs."""
        command = cancel_command(tenant_id=self._tenant_id, job=job_id, reason=reason)
        return self._publisher.publish_blocking(command, key=job_id)

    def flush(self, timeout_s: float = 30.0) -> int:
        """Wait for outstanding deliveries; the number still pending."""
        return self._publisher.flush(timeout_s)

    def close(self) -> None:
        """Flush, and close the publisher when this producer created it."""
        if self._owns_publisher:
            self._publisher.close()
        else:
            self._publisher.flush()

    def __enter__(self) -> JobProducer:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def _map_future(source: Future[Delivery], fn: Any) -> Future[Receipt]:
    target: Future[Receipt] = Future()

    def _done(done: Future[Delivery]) -> None:
        error = done.exception()
        if error is not None:
            target.set_exception(error)
        else:
            target.set_result(fn(done.result()))

    source.add_done_callback(_done)
    return target
