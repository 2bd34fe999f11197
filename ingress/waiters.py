"""``?wait=``: waiters woken by the job's terminal event, not by polling the read model.

One thread per API process tails ``brigade.job-events`` from its end (partitions assigned,
no consumer group, nothing committed) and hands each terminal event (``JobSucceeded``, a
terminal ``JobFailed``, ``JobDeadLettered``, ``JobCancelled``) to the event loop, which
wakes the waiters registered for that job. A waiter therefore costs one read-model look-up
when it starts and one future while it waits, however long. Terminal events seen in the
last ``remember`` jobs are kept, so a job that finished between its submission and the
waiter's registration is answered at once.

Concurrent waits are capped per tenant and per process; beyond either cap the request is
refused with 429 and ``Retry-After`` before anything is submitted.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from confluent_kafka import OFFSET_END, Consumer, KafkaException, TopicPartition

from brigade.kafka.clients import consumer_config
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.errors import ApiError
from projections.readmodel import JobStatus
from schemas import records as r
from schemas.codec import Codec

log = logging.getLogger(__name__)
# The records that may end a job (JobFailed only when terminal); any other is skipped unread.
MAYBE_TERMINAL: frozenset[type] = frozenset({r.JobSucceeded, r.JobFailed, r.JobDeadLettered, r.JobCancelled})


@dataclass(frozen=True, slots=True, kw_only=True)
class Terminal:
    """What a terminal event says about its job."""

    job_id: str
    tenant_id: str
    status: str
    at: datetime
    error: str | None = None
    result_inline: str | None = None
    result_ref: str | None = None
    model: str | None = None

    def apply(self, status: JobStatus | None, *, priority: str | None = None) -> JobStatus:
        """``status`` (or a bare one) moved to this terminal state."""
        base = status or JobStatus(
            job_id=self.job_id, tenant_id=self.tenant_id, status="queued", attempts=0,
            created_at=self.at, updated_at=self.at, sequence=0, priority=priority,
        )
        return replace(
            base, status=self.status, updated_at=self.at, error=self.error or base.error,  # type: ignore[arg-type]
            result_inline=self.result_inline, result_ref=self.result_ref, model=self.model or base.model,
        )


def terminal_of(record: Any) -> Terminal | None:
    """The terminal outcome an event records, or None for any other event."""
    envelope = getattr(record, "envelope", None)
    if envelope is None:
        return None
    base = {"job_id": envelope.job_id, "tenant_id": envelope.tenant_id, "at": envelope.occurred_at}
    if isinstance(record, r.JobSucceeded):
        return Terminal(status="succeeded", result_inline=record.result_inline, result_ref=record.result_ref,
                        model=record.model, **base)
    if isinstance(record, r.JobFailed) and record.terminal:
        return Terminal(status="failed", error=record.reason, **base)
    if isinstance(record, r.JobDeadLettered):
        return Terminal(status="failed", error=record.reason, **base)
    if isinstance(record, r.JobCancelled):
        return Terminal(status="cancelled", error=record.reason, **base)
    return None


class WaitRegistry:
    """Waiting requests by job id, with per-tenant and total caps; event-loop side only."""

    def __init__(self, *, per_tenant: int, total: int, remember: int = 100_000) -> None:
        self.per_tenant = per_tenant
        self.total = total
        self._remember = remember
        self._waiting: dict[str, set[asyncio.Future[Terminal]]] = {}
        self._by_tenant: dict[str, int] = {}
        self._count = 0
        self._finished: OrderedDict[str, Terminal] = OrderedDict()

    @property
    def waiting(self) -> int:
        """Waits in progress in this process."""
        return self._count

    @contextlib.contextmanager
    def slot(self, tenant_id: str) -> Iterator[None]:
        """Hold one wait slot of ``tenant_id`` for the block; 429 beyond a cap.

        Raises:
            ApiError: 429 ``too_many_waits`` with ``Retry-After``.
        """
        held = self._by_tenant.get(tenant_id, 0)
        if held >= self.per_tenant or self._count >= self.total:
            scope = "this tenant's" if held >= self.per_tenant else "this server's"
            raise ApiError(
                429, "too_many_waits", f"{scope} concurrent waits are at their cap; submit without "
                "wait and poll, or retry later", headers={"Retry-After": "1"},
            )
        self._by_tenant[tenant_id] = held + 1
        self._count += 1
        try:
            yield
        finally:
            self._count -= 1
            left = self._by_tenant[tenant_id] - 1
            if left:
                self._by_tenant[tenant_id] = left
            else:
                del self._by_tenant[tenant_id]

    async def wait(self, job_id: str, timeout_s: float) -> Terminal | None:
        """The job's terminal outcome once its event arrives, or None after ``timeout_s``."""
        known = self._finished.get(job_id)
        if known is not None:
            return known
        future: asyncio.Future[Terminal] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(job_id, set()).add(future)
        try:
            return await asyncio.wait_for(future, timeout_s)
        except TimeoutError:
            return None
        finally:
            waiters = self._waiting.get(job_id)
            if waiters is not None:
                waiters.discard(future)
                if not waiters:
                    del self._waiting[job_id]

    def finished(self, terminal: Terminal) -> None:
        """Record a terminal event and wake the job's waiters."""
        self._finished[terminal.job_id] = terminal
        self._finished.move_to_end(terminal.job_id)
        while len(self._finished) > self._remember:
            self._finished.popitem(last=False)
        for future in self._waiting.pop(terminal.job_id, ()):
            if not future.done():
                future.set_result(terminal)


def next_messages(consumer: Consumer, limit: int, *, timeout_s: float) -> list[Any]:
    """Up to ``limit`` messages, returned as soon as one has arrived (empty after ``timeout_s``).

    ``Consumer.consume(n, timeout)`` returns only once it holds ``n`` messages or the timeout
    has passed, so a tail at a few events a second answered each one ~half its timeout late
    (p50 281 ms at 10 events/s with a 0.5 s timeout). Waiting for the first message alone,
    then taking what is already fetched without waiting, answers within milliseconds.
    """
    first = consumer.poll(timeout_s)
    if first is None:
        return []
    return [first, *consumer.consume(limit - 1, timeout=0)] if limit > 1 else [first]


class EventTail:
    """Tails ``brigade.job-events`` in a thread and feeds terminal events to a ``WaitRegistry``."""

    def __init__(
        self, *, settings: Settings, registry: WaitRegistry, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.topic = Topology(settings).job_events
        self.registry = registry
        self.healthy = False
        self._loop = loop
        self._codec = Codec()
        group = f"{settings.kafka.topic_prefix}-api-waits-{uuid.uuid4().hex[:8]}"  # never joined or committed
        self._consumer = Consumer(consumer_config(settings, group, **{"client.id": "brigade-api-waits"}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="job-event-tail", daemon=True)

    def start(self) -> None:
        """Assign every partition at its end as it is now, then tail in the background.

        The end is read here rather than left to ``OFFSET_END``, which the client resolves only
        at its first fetch: an event written in between (a job finishing just after the API
        started, seconds later on a loaded machine) was never seen, and its waiters waited out
        their whole timeout.
        """
        metadata = self._consumer.list_topics(self.topic, timeout=10.0)
        partitions = metadata.topics[self.topic].partitions
        self._consumer.assign([TopicPartition(self.topic, p, self._end_of(p)) for p in partitions])
        self._thread.start()

    def _end_of(self, partition: int, *, deadline_s: float = 30.0) -> int:
        # A partition without a leader yet (a broker just restarted) answers with an error:
        # asking again until it has one keeps the position exact.
        deadline = time.monotonic() + deadline_s
        while True:
            try:
                _, high = self._consumer.get_watermark_offsets(
                    TopicPartition(self.topic, partition), timeout=10.0)
                return int(high)
            except KafkaException as exc:
                if time.monotonic() > deadline:
                    log.warning("end of %s[%d] unknown (%s): tailing from the end at the first fetch",
                                self.topic, partition, exc)
                    return OFFSET_END
                time.sleep(0.2)

    def stop(self) -> None:
        """Stop tailing and close the consumer."""
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
        self._consumer.close()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                messages = next_messages(self._consumer, 500, timeout_s=0.5)
            except KafkaException as exc:
                self.healthy = False
                log.warning("tailing %s: %s", self.topic, exc)
                continue
            self.healthy = True
            finished = [t for t in (self._terminal(m) for m in messages) if t is not None]
            if finished:
                self._loop.call_soon_threadsafe(self._deliver, finished)

    def _terminal(self, message: Any) -> Terminal | None:
        value = message.value()
        if message.error() is not None or value is None:
            return None
        # Three of a plain job's four events cannot end it: known from the header alone,
        # they are not decoded (JobSubmitted carries the whole input). A header the codec
        # has not seen yet names no type, and that record is decoded.
        kind = self._codec.record_type(value)
        if kind is not None and kind not in MAYBE_TERMINAL:
            return None
        try:
            return terminal_of(self._codec.decode(value))
        except Exception:  # noqa: BLE001 - an undecodable event is the projector's to dead-letter
            return None

    def _deliver(self, finished: list[Terminal]) -> None:
        for terminal in finished:
            self.registry.finished(terminal)

