"""Test helpers for ingress: a uvicorn server on a real socket, Kafka readers, a stand-in processor.

``MemoryReadModel`` only stands in while ``projections.queries`` is missing; when the
projections' ClickHouse read model is importable the API runs its embedded projector over
chDB and the tests read through it.
"""

from __future__ import annotations

import importlib.util
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import uvicorn
from confluent_kafka import TopicPartition
from starlette.applications import Starlette

from brigade.httpserver import HTTP_PROTOCOL
from brigade.ids import event_id
from brigade.kafka.clients import make_consumer, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from projections.readmodel import JobEventView, JobPage, JobStatus, TenantStats
from schemas import records as r
from schemas.codec import Codec
from testkit.support import poll_until as wait_until
from tests.conftest import free_port

__all__ = ["wait_until"]

HAVE_CLICKHOUSE_READ_MODEL = importlib.util.find_spec("projections.queries") is not None


@contextmanager
def serve(app: Starlette) -> Iterator[str]:
    """Run ``app`` under uvicorn on a free loopback port in a thread; yields the base URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", lifespan="on", http=HTTP_PROTOCOL
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn-test", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=30)
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        assert not thread.is_alive(), "uvicorn did not stop"


def read_topic(
    settings: Settings, topic: str, *, timeout_s: float = 20.0, decode: Callable[[bytes], Any] | None = None
) -> list[Any]:
    """Every record of ``topic`` up to its current end (acked writes are all there).

    Decoded with Brigade's codec unless ``decode`` is given (``bytes`` keeps the raw values).
    """
    consumer = make_consumer(settings, f"reader-{time.monotonic_ns()}")
    decode = decode or Codec().decode
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1] for p in partitions
        }
        consumer.assign([TopicPartition(topic, p, 0) for p in partitions if ends[p] > 0])
        done = {p: 0 for p in partitions if ends[p] > 0}
        records: list[Any] = []
        deadline = time.monotonic() + timeout_s
        while any(done[p] < ends[p] for p in done):
            assert time.monotonic() < deadline, f"{topic} not read to its end in {timeout_s}s"
            message = consumer.poll(0.2)
            if message is not None and message.error() is None:
                records.append(decode(message.value()))
                done[message.partition()] = message.offset() + 1
        return records
    finally:
        consumer.close()


def commands_for(records: list[Any], job_id: str) -> list[Any]:
    """The commands in ``records`` about ``job_id``."""
    return [c for c in records if (c.spec.job_id if isinstance(c, r.SubmitJob) else c.job_id) == job_id]


class MemoryReadModel:
    """A dict-backed ReadModel, folded from the same lifecycle events the processor emits."""

    def __init__(self) -> None:
        self._jobs: dict[tuple[str, str], JobStatus] = {}
        self._events: dict[tuple[str, str], list[JobEventView]] = {}
        self._lock = threading.Lock()

    def apply(self, event: Any) -> None:
        """Fold one lifecycle event."""
        env = event.envelope
        key = (env.tenant_id, env.job_id)
        with self._lock:
            current = self._jobs.get(key)
            self._jobs[key] = _fold(current, event)
            detail = {"spec": {"payload_sha256": event.spec.payload_sha256}} if hasattr(event, "spec") else {}
            self._events.setdefault(key, []).append(
                JobEventView(
                    event_id=env.event_id,
                    job_id=env.job_id,
                    sequence=env.sequence,
                    event_type=type(event).__name__,
                    occurred_at=env.occurred_at,
                    detail=detail,
                )
            )

    def job(self, tenant_id: str, job_id: str) -> JobStatus | None:
        with self._lock:
            return self._jobs.get((tenant_id, job_id))

    def events(self, tenant_id: str, job_id: str) -> list[JobEventView]:
        with self._lock:
            return list(self._events.get((tenant_id, job_id), []))

    def list_jobs(
        self,
        tenant_id: str,
        *,
        status: Any = None,
        pool: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        with self._lock:
            jobs = [j for (t, _), j in self._jobs.items() if t == tenant_id]
        return JobPage(jobs=jobs[:limit], next_cursor=None)

    def tenant_stats(self, tenant_id: str, *, since: datetime) -> TenantStats:
        raise NotImplementedError("not used by ingress")


def _fold(current: JobStatus | None, event: Any) -> JobStatus:
    env = event.envelope
    if isinstance(event, r.JobSubmitted):
        return JobStatus(
            job_id=env.job_id,
            tenant_id=env.tenant_id,
            status="queued",
            attempts=0,
            created_at=env.occurred_at,
            updated_at=env.occurred_at,
            sequence=env.sequence,
            priority=event.spec.priority,
        )
    assert current is not None
    changes: dict[str, Any] = {"updated_at": env.occurred_at, "sequence": env.sequence}
    if isinstance(event, r.JobStarted):
        changes |= {"status": "running", "attempts": event.attempt}
    elif isinstance(event, r.JobQueued):
        changes |= {"pool": event.pool}
    elif isinstance(event, r.JobSucceeded):
        changes |= {
            "status": "succeeded",
            "result_inline": event.result_inline,
            "result_ref": event.result_ref,
        }
    elif isinstance(event, r.JobCancelled):
        changes |= {"status": "cancelled"}
    return replace(current, **changes)


class StandInProcessor:
    """Emits the lifecycle events the job processor would, to the real event log.

    Tests that need a job to move (result, wait, cancel of a finished job) use this instead
    of running the Faust processor; the projector (or the memory model) picks them up.
    """

    def __init__(self, settings: Settings, memory: MemoryReadModel | None) -> None:
        self._producer = make_producer(settings)
        self._topic = Topology(settings).job_events
        self._codec = Codec()
        self._memory = memory
        self._sequence: dict[str, int] = {}

    def _envelope(self, spec: r.JobSpec, transition: str) -> r.Envelope:
        seq = self._sequence.get(spec.job_id, 0) + 1
        self._sequence[spec.job_id] = seq
        return r.Envelope(
            event_id=event_id(spec.job_id, transition, 1),
            job_id=spec.job_id,
            tenant_id=spec.tenant_id,
            occurred_at=datetime.now(UTC),
            sequence=seq,
        )

    def _emit(self, event: Any) -> None:
        self._producer.produce(
            self._topic, key=event.envelope.job_id.encode(), value=self._codec.encode(event)
        )
        assert self._producer.flush(10) == 0
        if self._memory is not None:
            self._memory.apply(event)

    def submitted(self, spec: r.JobSpec) -> None:
        """JobSubmitted."""
        self._emit(r.JobSubmitted(envelope=self._envelope(spec, "submitted"), spec=spec))

    def queued(self, spec: r.JobSpec) -> None:
        """JobQueued (attempt 1)."""
        self._emit(
            r.JobQueued(
                envelope=self._envelope(spec, "queued"), pool="default", lane="batch", model="m", attempt=1
            )
        )

    def started(self, spec: r.JobSpec) -> None:
        """JobStarted (attempt 1)."""
        self._emit(
            r.JobStarted(
                envelope=self._envelope(spec, "started"),
                attempt=1,
                worker="w1",
                lease_deadline=datetime.now(UTC),
                batch_id="b1",
                model="m",
            )
        )

    def succeeded(self, spec: r.JobSpec, result_json: str) -> None:
        """JobSucceeded with an inline result."""
        self._emit(
            r.JobSucceeded(
                envelope=self._envelope(spec, "succeeded"),
                attempt=1,
                model="m",
                latency_ms=1.0,
                result_inline=result_json,
                result_size=len(result_json),
            )
        )
