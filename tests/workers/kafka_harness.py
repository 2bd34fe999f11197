"""Test harness for the worker app on the real broker: a worker subprocess, dispatch helpers,
and a scripted stand-in for the job processor (folds outcomes into lifecycle events)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from confluent_kafka import Message

from brigade.ids import event_id
from brigade.kafka import topology
from brigade.kafka.clients import make_admin, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from schemas.codec import Codec
from schemas.records import (
    Envelope,
    JobCancelled,
    JobFailed,
    JobQueued,
    JobSpec,
    JobStarted,
    JobSubmitted,
    JobSucceeded,
    WorkItem,
    WorkOutcome,
)
from testkit.support import ConsumerThread, poll_until, settings_env

CODEC = Codec()
BRIGADE = str(Path(sys.executable).with_name("brigade"))


class WorkerProcess:
    """``brigade workers --pool ...`` in a subprocess; always killed at the end."""

    def __init__(self, settings: Settings, pools: list[str], log: Path, *,
                 instance: str | None = None) -> None:
        args = [BRIGADE, "workers", "--loglevel", "info"]
        for pool in pools:
            args += ["--pool", pool]
        if instance is not None:
            args += ["--instance", instance]
        self._log = log.open("ab")
        self.killed = False
        self.proc = subprocess.Popen(args, env=settings_env(settings), stdout=self._log,
                                     stderr=subprocess.STDOUT, cwd=log.parent)

    def kill(self) -> None:
        self.killed = True
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(timeout=30)
        self._log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)
        self._log.close()


def env_of(job: str, seq: int, tenant: str = "t1") -> Envelope:
    return Envelope(event_id=event_id(job, f"test:{seq}"), job_id=job, tenant_id=tenant,
                    occurred_at=datetime.now(UTC), sequence=seq)


def make_spec(text: str, *, lane: str = "batch", callback_url: str | None = None) -> JobSpec:
    return JobSpec(job_id=str(uuid.uuid4()), tenant_id="t1", payload_sha256="x",
                   created_at=datetime.now(UTC), input=json.dumps(text), callback_url=callback_url,
                   priority="interactive" if lane == "interactive" else "batch")


class Dispatcher:
    """Produces what the processor would: lifecycle events and work items."""

    def __init__(self, settings: Settings) -> None:
        self.topology = Topology(settings)
        self.producer = make_producer(settings)

    def submit(self, spec: JobSpec, *, pool: str, lane: str, model: str) -> WorkItem:
        """JobSubmitted + JobQueued on job-events, then the WorkItem on the work topic."""
        job = spec.job_id
        self.event(job, JobSubmitted(envelope=env_of(job, 1), spec=spec))
        self.event(job, JobQueued(envelope=env_of(job, 2), pool=pool, lane=lane, model=model, attempt=1))
        item = WorkItem(spec=spec, attempt=1, pool=pool, lane=lane, model=model,
                        dispatched_at=datetime.now(UTC), lease_ms=60_000)
        self.work(item)
        return item

    def work(self, item: WorkItem) -> None:
        topic = self.topology.work(item.pool, item.lane)
        self.producer.produce(topic, key=item.spec.job_id.encode(), value=CODEC.encode(item))
        self.producer.flush(10)

    def event(self, job: str, record: object) -> None:
        self.producer.produce(self.topology.job_events, key=job.encode(), value=CODEC.encode(record))
        self.producer.flush(10)


class StandInProcessor(ConsumerThread):
    """Consumes outcomes in a thread; emits JobStarted/JobSucceeded/JobFailed once per job."""

    def __init__(self, settings: Settings) -> None:
        self.dispatcher = Dispatcher(settings)
        self.outcomes: list[WorkOutcome] = []
        self.finished: dict[str, str] = {}
        self.emitted: defaultdict[str, int] = defaultdict(int)
        self._lock = threading.RLock()
        self.workers: list[WorkerProcess] = []
        super().__init__(settings, [self.dispatcher.topology.outcomes], name="standin")
        self.start()

    def handle(self, message: Message) -> None:
        outcome = CODEC.decode_as(message.value() or b"", WorkOutcome)
        with self._lock:
            self.outcomes.append(outcome)
            self._fold(outcome)

    def _fold(self, o: WorkOutcome) -> None:
        job = o.job_id
        if job in self.finished:
            return
        record = self._event_for(o, env_of(job, 10 + len(self.outcomes)))
        if record is None:
            return
        if not isinstance(record, JobStarted):
            self.finished[job] = o.kind
            self.emitted[job] += 1
        self.dispatcher.event(job, record)

    @staticmethod
    def _event_for(o: WorkOutcome, envelope: Envelope) -> object | None:
        if o.kind == "started":
            deadline = datetime.now(UTC) + timedelta(minutes=1)
            return JobStarted(envelope=envelope, attempt=o.attempt, worker=o.worker,
                              lease_deadline=deadline, batch_id=o.batch_id)
        if o.kind == "succeeded":
            return JobSucceeded(envelope=envelope, attempt=o.attempt, model=o.model,
                                latency_ms=o.latency_ms, result_inline=o.result_inline,
                                result_size=o.result_size, result_sha256=o.result_sha256)
        if o.kind == "failed" and o.error_class == "permanent":
            return JobFailed(envelope=envelope, attempt=o.attempt, reason=o.error or "",
                             error_class="permanent", terminal=True)
        return None

    def cancel(self, job: str) -> None:
        self.dispatcher.event(job, JobCancelled(envelope=env_of(job, 3), reason="test"))

    def of(self, job: str, kind: str | None = None) -> list[WorkOutcome]:
        with self._lock:
            return [o for o in self.outcomes if o.job_id == job and (kind is None or o.kind == kind)]

    def wait_for(self, check: Callable[[], Any], *, timeout: float = 90.0, what: str = "") -> Any:
        def probe() -> Any:
            for worker in self.workers:
                if worker.proc.poll() is not None and not worker.killed:
                    raise AssertionError(f"worker exited with {worker.proc.returncode}; see its log")
            with self._lock:
                return check()

        return poll_until(probe, timeout_s=timeout, what=what)


@contextmanager
def one_worker(settings: Settings, log: Path) -> Iterator[StandInProcessor]:
    """The topology applied, a stand-in processor and one ``brigade workers --pool p`` on
    ``settings``; the worker is killed and the processor closed on exit."""
    assert not topology.apply(make_admin(settings), Topology(settings).specs()).drift
    processor = StandInProcessor(settings)
    worker = WorkerProcess(settings, ["p"], log)
    processor.workers.append(worker)
    try:
        yield processor
    finally:
        worker.kill()
        processor.close()
