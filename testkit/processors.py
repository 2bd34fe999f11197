"""A real-broker harness: processor subprocesses, a scripted stand-in for workers, and
readers of the event log, work topics and dead letters."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from collections import defaultdict
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, Message, Producer

from brigade.kafka.clients import make_consumer, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import LANES, Settings
from schemas.codec import Codec
from schemas.records import DeadLetter, JobSpec, LifecycleEvent, WorkItem, WorkOutcome, is_lifecycle
from testkit.jobs import cancel, submit
from testkit.support import ConsumerThread, poll_until, settings_env


class Processors:
    """Processor worker subprocesses; every one is killed at ``close``."""

    def __init__(self, settings: Settings, logs: Path) -> None:
        self.settings = settings
        self.logs = logs
        self.procs: dict[str, subprocess.Popen[bytes]] = {}
        self.killed: set[str] = set()
        self.loglevel = "info"

    def start(self, node: str, *, delay_tiers: bool = True,
              instance: str | None = None) -> subprocess.Popen[bytes]:
        """Start ``python -m processors`` as ``node`` (memory store), a static member when ``instance``."""
        args = [sys.executable, "-m", "processors", "--node", node, "--store", "memory://",
                "--loglevel", self.loglevel]
        if not delay_tiers:
            args.append("--no-delay-tiers")
        if instance is not None:
            args += ["--instance", instance]
        with (self.logs / f"{node}.log").open("ab") as log:
            proc = subprocess.Popen(args, cwd=self.logs, env=settings_env(self.settings), stdout=log,
                                    stderr=subprocess.STDOUT)
        self.procs[node] = proc
        return proc

    def kill(self, node: str) -> None:
        """SIGKILL ``node``: no shutdown, no final commit."""
        proc = self.procs[node]
        self.killed.add(node)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)

    def close(self) -> None:
        """Stop every process still running: SIGTERM, then SIGKILL."""
        for proc in self.procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs.values():
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)

    def assert_alive(self) -> None:
        """Fail with the logs when a processor died without being killed on purpose."""
        dead = [n for n, p in self.procs.items() if n not in self.killed and p.poll() is not None]
        if dead:
            raise AssertionError(f"processor(s) {dead} exited:\n{self.log_tail()}")

    def log_tail(self) -> str:
        """The last lines of every process log (for failure messages)."""
        return "\n".join(f"--- {p.name}\n" + p.read_text()[-3000:] for p in self.logs.glob("*.log"))


class Observer(ConsumerThread):
    """Reads the event log, work topics and DLQ on a background thread."""

    def __init__(self, settings: Settings, watch: Processors | None = None) -> None:
        self.topology = Topology(settings)
        self.codec = Codec()
        self.watch = watch
        self.events: dict[str, list[LifecycleEvent]] = defaultdict(list)
        self.partitions: dict[str, int] = {}  # each job's job-events partition
        self.work: list[tuple[str, WorkItem]] = []
        self.dead: list[DeadLetter] = []
        self.retry_topics: list[tuple[str, bytes]] = []
        self._lock = threading.Lock()
        topics = [self.topology.job_events, self.topology.dlq]
        topics += [self.topology.work(p, lane) for p in settings.pools for lane in LANES]
        topics += [t for _, t in self.topology.retry_tiers()]
        super().__init__(settings, topics, name="observer")
        self.start()

    def handle(self, message: Message) -> None:
        """Record one message of the observed topics."""
        topic, value = message.topic() or "", message.value() or b""
        record = self.codec.decode(value)
        with self._lock:
            if topic == self.topology.job_events and is_lifecycle(record):
                self.events[record.envelope.job_id].append(record)
                self.partitions[record.envelope.job_id] = message.partition() or 0
            elif topic == self.topology.dlq and isinstance(record, DeadLetter):
                self.dead.append(record)
            elif isinstance(record, WorkItem):
                self.work.append((topic, record))
            else:
                self.retry_topics.append((topic, value))

    def of(self, job_id: str) -> list[LifecycleEvent]:
        """The events of one job seen so far."""
        with self._lock:
            return list(self.events.get(job_id, []))

    def names(self, job_id: str) -> list[str]:
        """The event type names of one job seen so far."""
        return [type(e).__name__ for e in self.of(job_id)]

    def wait_event(self, job_id: str, name: str, *, count: int = 1, timeout: float = 30.0) -> Any:
        """Wait until ``job_id`` has ``count`` events of type ``name``; return the last one."""
        def probe() -> Any:
            if self.watch is not None:
                self.watch.assert_alive()
            found = [e for e in self.of(job_id) if type(e).__name__ == name]
            return found[count - 1] if len(found) >= count else None
        what = f"{name} x{count} for {job_id}: {self.names(job_id)}"
        return poll_until(probe, timeout_s=timeout, what=what)


class Client:
    """Produces commands, worker outcomes and raw bytes, the way ingress and workers do."""

    def __init__(self, settings: Settings) -> None:
        self.topology = Topology(settings)
        self.codec = Codec()
        self.producer = make_producer(settings)

    def send(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce and wait for the acknowledgement."""
        self.producer.produce(topic, key=key, value=value)
        self.producer.flush(10)

    def submit(self, spec: JobSpec) -> None:
        """Submit ``spec``."""
        self.send(self.topology.commands, spec.job_id.encode(), self.codec.encode(submit(spec)))

    def cancel(self, spec: JobSpec) -> None:
        """Cancel ``spec``."""
        self.send(self.topology.commands, spec.job_id.encode(), self.codec.encode(cancel(spec)))

    def outcome(self, outcome: WorkOutcome) -> None:
        """Report a worker outcome."""
        self.send(self.topology.outcomes, outcome.job_id.encode(), self.codec.encode(outcome))


def scripted_worker(settings: Settings, respond: Callable[[WorkItem], list[WorkOutcome]],
                    stop: threading.Event) -> Iterator[None]:
    """Yield once started; answer each work item with ``respond``'s outcomes until ``stop``."""
    topology, codec = Topology(settings), Codec()
    consumer, producer = work_clients(settings)

    def run() -> None:
        while not stop.is_set():
            messages = [m for m in consumer.consume(100, 0.1) if m.error() is None]
            for message in messages:
                item = codec.decode_as(message.value() or b"", WorkItem)
                for outcome in respond(item):
                    producer.produce(topology.outcomes, key=outcome.job_id.encode(),
                                     value=codec.encode(outcome))
            if messages:  # commit what was read only once its outcomes are acknowledged
                producer.flush(10)
                consumer.commit(asynchronous=False)
        producer.flush(10)
        consumer.close()

    yield from running(run, stop)


def work_clients(settings: Settings) -> tuple[Consumer, Producer]:
    """A consumer of every work topic and a producer, as a stand-in worker uses them.

    Named and committing like the workers: the processors read a workers' group's commits
    to tell a lost item (committed past, never started) from one still queued.
    """
    topology = Topology(settings)
    consumer = make_consumer(settings, topology.worker_group(settings.pools))
    consumer.subscribe([topology.work(p, lane) for p in settings.pools for lane in LANES])
    return consumer, make_producer(settings)


def running(run: Callable[[], None], stop: threading.Event) -> Iterator[None]:
    """Run ``run`` on a thread; yield once started; on close set ``stop`` and join it."""
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield None
    finally:
        stop.set()
        thread.join(15)


Respond = Callable[[WorkItem], list[WorkOutcome]]


def _base(item: WorkItem, worker: str) -> dict[str, Any]:
    return {"job_id": item.spec.job_id, "tenant_id": item.spec.tenant_id, "attempt": item.attempt,
            "occurred_at": datetime.now(UTC), "worker": worker}


def succeed(item: WorkItem, *, worker: str = "w", result: str = "{}") -> list[WorkOutcome]:
    """A worker's answer to ``item``: started, then succeeded with ``result`` inline."""
    base, key = _base(item, worker), f"{item.spec.job_id}:{item.attempt}"
    return [
        WorkOutcome(outcome_id=f"{key}:started", kind="started", lease_ms=30_000, **base),
        WorkOutcome(outcome_id=f"{key}:succeeded", kind="succeeded", result_inline=result,
                    latency_ms=1.0, batch_size=1, **base),
    ]


def rate_limited_once(retry_after_ms: int) -> Respond:
    """A worker that answers attempt 1 with a 429 (``retry_after_ms``) and later attempts with success."""

    def respond(item: WorkItem) -> list[WorkOutcome]:
        if item.attempt != 1:
            return succeed(item)
        base, key = _base(item, "w"), f"{item.spec.job_id}:{item.attempt}"
        return [WorkOutcome(outcome_id=f"{key}:started", kind="started", lease_ms=30_000, **base),
                WorkOutcome(outcome_id=f"{key}:failed", kind="failed", error="HTTP 429",
                            error_class="rate_limited", retry_after_ms=retry_after_ms, **base)]

    return respond
