"""Job processor throughput and command → dispatch latency, through a real broker.

One processor process (``python -m processors``, memory store). The benchmark plays
ingress (submits) and the workers (answers each work item with ``started`` then
``succeeded``), so each job is three inputs and four lifecycle events
(submit → queued → started → succeeded). Latency is measured on message timestamps: the
submit command's CreateTime to the work item's CreateTime (both stamped on this machine),
at a paced rate so the processor is not saturated.

    .venv/bin/python -m bench.bench_processor [jobs] [latency_jobs]
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from confluent_kafka import Message, Producer

from bench.bench_kafka import bench_broker
from bench.report import emit, percentile
from brigade.kafka import topology
from brigade.kafka.clients import make_admin, make_producer
from brigade.settings import LANES, KafkaSettings, Settings, TopicSettings
from schemas.codec import Codec
from schemas.records import JobSucceeded, OutcomeKind, WorkItem, WorkOutcome
from testkit.jobs import spec, submit
from testkit.processors import Processors
from testkit.support import ConsumerThread, poll_until

codec = Codec()


@contextmanager
def processor(settings: Settings, folder: Path) -> Iterator[None]:
    """One processor process for the benchmark's settings."""
    procs = Processors(settings, folder)
    procs.loglevel = "warning"
    procs.start("bench", delay_tiers=False)
    try:
        yield
    finally:
        procs.close()


class Counter(ConsumerThread):
    """Reads job-events and work topics; answers work items like a worker would."""

    def __init__(self, settings: Settings, *, answer: bool) -> None:
        topo = topology.Topology(settings)
        self.succeeded = 0
        self.dispatched: dict[str, float] = {}
        self._answer = answer
        self._producer: Producer = make_producer(settings)
        self._outcomes = topo.outcomes
        self._events = topo.job_events
        work = [topo.work(p, lane) for p in settings.pools for lane in LANES]
        super().__init__(settings, [topo.job_events, *work], name="bench", batch=2000)
        self.start()

    def handle(self, message: Message) -> None:
        """Count a success, or note (and answer) a dispatched work item."""
        if message.topic() == self._events:
            if isinstance(codec.decode(message.value() or b""), JobSucceeded):
                self.succeeded += 1
            return
        item = codec.decode_as(message.value() or b"", WorkItem)
        self.dispatched[item.spec.job_id] = message.timestamp()[1] / 1000.0
        if self._answer:
            self._reply(item)

    def idle(self) -> None:
        """Serve the producer's delivery reports."""
        self._producer.poll(0)

    def finish(self) -> None:
        """Deliver the last answers."""
        self._producer.flush(10)

    def _reply(self, item: WorkItem) -> None:
        kinds: tuple[OutcomeKind, ...] = ("started", "succeeded")
        for kind in kinds:
            outcome = WorkOutcome(outcome_id=f"{item.spec.job_id}:{kind}", kind=kind,
                                  job_id=item.spec.job_id, tenant_id=item.spec.tenant_id,
                                  attempt=item.attempt, occurred_at=datetime.now(UTC), worker="bench",
                                  lease_ms=60_000, latency_ms=1.0, batch_size=1)
            self._produce(self._outcomes, item.spec.job_id, codec.encode(outcome))

    def _produce(self, topic: str, key: str, value: bytes) -> None:
        while True:
            try:
                self._producer.produce(topic, key=key.encode(), value=value)
                return
            except BufferError:
                self._producer.poll(0.05)



def _settings(bootstrap: str, folder: Path) -> Settings:
    prefix = f"benchp{uuid.uuid4().hex[:8]}"
    settings = Settings(data_dir=folder / "brigade",
                        kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix),
                        topics=TopicSettings(partitions=3, work_partitions=3, retry_partitions=1))
    topology.apply(make_admin(settings), topology.Topology(settings).specs())
    return settings


def _submit_all(settings: Settings, producer: Producer, n: int, *, rate: float | None) -> dict[str, float]:
    topo = topology.Topology(settings)
    sent: dict[str, float] = {}
    start = time.perf_counter()
    for i in range(n):
        s = spec(f"bench-{uuid.uuid4().hex}", created_at=datetime.now(UTC))
        sent[s.job_id] = time.time()
        producer.produce(topo.commands, key=s.job_id.encode(), value=codec.encode(submit(s)))
        producer.poll(0)
        if rate is not None:
            delay = start + (i + 1) / rate - time.perf_counter()
            if delay > 0:
                time.sleep(delay)
    producer.flush(30)
    return sent


def _wait(probe: Callable[[], bool], timeout: float) -> None:
    # A run that did not finish fails rather than report numbers for part of the work.
    poll_until(probe, timeout_s=timeout)


def throughput(bootstrap: str, n: int) -> dict[str, float]:
    """Lifecycle events per second for ``n`` jobs, worker answers produced by the benchmark."""
    with tempfile.TemporaryDirectory() as folder:
        settings = _settings(bootstrap, Path(folder))
        counter = Counter(settings, answer=True)
        producer = make_producer(settings)
        with processor(settings, Path(folder)):
            _submit_all(settings, producer, 1, rate=None)  # warm up: group join, recovery, producer id
            _wait(lambda: counter.succeeded >= 1, 90)
            begin, base = time.perf_counter(), counter.succeeded
            _submit_all(settings, producer, n, rate=None)
            _wait(lambda: counter.succeeded >= base + n, 300)
            elapsed = time.perf_counter() - begin
        counter.close()
    done = counter.succeeded - base
    return {"jobs": done, "seconds": elapsed, "jobs_per_s": done / elapsed,
            "lifecycle_events_per_s": 4 * done / elapsed, "inputs_per_s": 3 * done / elapsed}


def latency(bootstrap: str, n: int, rate: float) -> dict[str, float]:
    """Submit command → work item dispatched, at a paced ``rate`` (no worker answers)."""
    with tempfile.TemporaryDirectory() as folder:
        settings = _settings(bootstrap, Path(folder))
        counter = Counter(settings, answer=False)
        # The same producer warms up and measures: a fresh idempotent producer holds its
        # first messages until it has a producer id (~1 s on a busy broker), which showed
        # up as the p99 of the first 200 ms of paced submits, not as processor latency.
        producer = make_producer(settings)
        with processor(settings, Path(folder)):
            _submit_all(settings, producer, 1, rate=None)
            _wait(lambda: len(counter.dispatched) >= 1, 90)
            sent = _submit_all(settings, producer, n, rate=rate)
            _wait(lambda: all(j in counter.dispatched for j in sent), 120)
        counter.close()
    ms = [(counter.dispatched[j] - t) * 1000 for j, t in sent.items() if j in counter.dispatched]
    return {"jobs": len(ms), "rate_per_s": rate, "p50_ms": percentile(ms, 0.5),
            "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)}


def main() -> None:
    """Run both measurements and write ``bench/results/processor.json``."""
    jobs = int(sys.argv[1]) if len(sys.argv) > 1 else 5000
    latency_jobs = int(sys.argv[2]) if len(sys.argv) > 2 else 1000
    with bench_broker() as bootstrap:
        t = throughput(bootstrap, jobs)
        lat = latency(bootstrap, latency_jobs, rate=200.0)
    rows = [
        {"measure": "lifecycle events/s (1 processor)", "value": t["lifecycle_events_per_s"]},
        {"measure": "inputs decided/s (submit+2 outcomes)", "value": t["inputs_per_s"]},
        {"measure": "jobs/s end to end", "value": t["jobs_per_s"]},
        {"measure": f"command→dispatch p50 ms @ {lat['rate_per_s']:.0f}/s", "value": lat["p50_ms"]},
        {"measure": f"command→dispatch p99 ms @ {lat['rate_per_s']:.0f}/s", "value": lat["p99_ms"]},
    ]
    emit("processor", f"Job processor: {t['jobs']:.0f} jobs, {lat['jobs']:.0f} paced", rows,
         extra={"throughput": t, "latency": lat})


if __name__ == "__main__":
    main()
