"""Worker benchmarks through the real broker and the emulator at a GPU-like cost.

(b) batching speed-up: the same jobs through the worker with max batch size 1 and 32;
(c) mixed load: a batch-lane backlog plus a steady interactive stream at once, reporting
jobs/s and p50/p99 latency (dispatch to outcome) per lane.

WorkItems are produced straight to the work topics and outcomes consumed from
``brigade.outcomes`` (no processor). Run: ``.venv/bin/python bench/bench_workers.py``
(``BRIGADE_BENCH_BOOTSTRAP`` picks the broker, default 127.0.0.1:19092). Prints a table and
writes ``bench/results/workers.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
from confluent_kafka import Message

from brigade.kafka import topology
from brigade.kafka.clients import make_admin, make_producer
from brigade.kafka.topology import Topology
from brigade.net import free_port
from brigade.settings import KafkaSettings, LaneSettings, PoolSettings, Settings, TopicSettings
from schemas.codec import Codec
from schemas.records import JobSpec, WorkItem, WorkOutcome
from testkit.support import ConsumerThread, poll_until, settings_env
from workers.emulator import EmulatorConfig

CODEC = Codec()
GPU = EmulatorConfig(batch_latency_ms=20.0, item_latency_ms=0.5, gpu_slots=1, record_inputs=False)
RESULTS = Path(__file__).parent / "results" / "workers.json"
PROFILE: str | None = None


_EMULATOR = (
    "import sys, uvicorn\n"
    "from workers.emulator import EmulatorConfig, create_emulator_app\n"
    "config = EmulatorConfig(batch_latency_ms=float(sys.argv[2]), item_latency_ms=float(sys.argv[3]),\n"
    "                        gpu_slots=1, record_inputs=False)\n"
    "uvicorn.run(create_emulator_app(config), host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')\n"
)


@contextmanager
def emulator() -> Iterator[str]:
    # Its own process: in this one it shared the GIL with the outcome collector, and its
    # answers slowed down with the collector's load, so the bench measured itself.
    port = free_port()
    args = [str(port), str(GPU.batch_latency_ms), str(GPU.item_latency_ms)]
    proc = subprocess.Popen([sys.executable, "-c", _EMULATOR, *args])
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: _healthy(url, proc), timeout_s=60, what=f"the emulator at {url}")
        yield url
    finally:
        proc.terminate()
        proc.wait(30)


def _healthy(url: str, proc: subprocess.Popen[bytes]) -> bool:
    if proc.poll() is not None:
        raise RuntimeError(f"the emulator exited with {proc.returncode}")
    try:
        return httpx.get(f"{url}/healthz").status_code == 200
    except httpx.TransportError:
        return False


def make_settings(bootstrap: str, endpoint: str, batch_size: int, data: Path) -> Settings:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    pool = PoolSettings(
        model="emulated-minilm", endpoint=endpoint, max_concurrency=4,
        interactive=LaneSettings(max_batch_size=min(batch_size, 16), max_delay_ms=5),
        batch=LaneSettings(max_batch_size=batch_size, max_delay_ms=50, token_budget=1_000_000),
    )
    kafka = KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix, client_id=prefix)
    return Settings(data_dir=data, kafka=kafka,
                    topics=TopicSettings(partitions=3, work_partitions=3, retry_partitions=1),
                    object_store_url=f"file://{data}/objects", pools={"p": pool}, default_pool="p")


@contextmanager
def worker(settings: Settings, log: Path) -> Iterator[subprocess.Popen[bytes]]:
    env = settings_env(settings)
    brigade = str(Path(sys.executable).with_name("brigade"))
    command = [brigade, "workers", "--pool", "p"]
    if PROFILE is not None:
        # Local profiling only (pyinstrument is not a project dependency); the worker is
        # stopped with SIGINT so the profiler writes its report.
        command = [str(Path(sys.executable).with_name("pyinstrument")), "-r", "text", "-o", PROFILE, *command]
    with log.open("ab") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=out)
        try:
            yield proc
        finally:
            proc.send_signal(signal.SIGINT if PROFILE is not None else signal.SIGKILL)
            try:
                proc.wait(60)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(30)


def item(lane: str) -> WorkItem:
    spec = JobSpec(job_id=str(uuid.uuid4()), tenant_id="bench", payload_sha256="x",
                   created_at=datetime.now(UTC), input=json.dumps(f"sentence {uuid.uuid4().hex}"),
                   priority="interactive" if lane == "interactive" else "batch")
    return WorkItem(spec=spec, attempt=1, pool="p", lane=lane, model="emulated-minilm",
                    dispatched_at=datetime.now(UTC), lease_ms=60_000)


class Collector(ConsumerThread):
    """Consumes outcomes in a thread; records when each job's final outcome was seen."""

    def __init__(self, settings: Settings) -> None:
        self.done: dict[str, tuple[float, WorkOutcome]] = {}
        super().__init__(settings, [Topology(settings).outcomes], name="bench")
        self.start()

    def handle(self, message: Message) -> None:
        """Note the time of a job's final outcome."""
        outcome = CODEC.decode_as(message.value() or b"", WorkOutcome)
        if outcome.kind in ("succeeded", "failed", "skipped"):
            self.done.setdefault(outcome.job_id, (time.time(), outcome))

    def wait(self, jobs: set[str], timeout: float = 600.0) -> None:
        """Until every job in ``jobs`` has its final outcome."""
        poll_until(lambda: jobs <= self.done.keys(), timeout_s=timeout, interval_s=0.02,
                   what=f"{len(jobs - self.done.keys())} unfinished jobs")


def produce(settings: Settings, items: list[WorkItem], producer: Any) -> None:
    topo = topology.Topology(settings)
    for it in items:
        producer.produce(topo.work("p", it.lane), key=it.spec.job_id.encode(), value=CODEC.encode(it))
        producer.poll(0)
    producer.flush(30)


@contextmanager
def running(
    bootstrap: str, endpoint: str, batch_size: int, data: Path
) -> Iterator[tuple[Settings, Collector, Any]]:
    settings = make_settings(bootstrap, endpoint, batch_size, data)
    topology.apply(make_admin(settings), topology.Topology(settings).specs())
    collector = Collector(settings)
    producer = make_producer(settings)
    with worker(settings, data / f"worker-{batch_size}.log"):
        warm = [item("interactive")]
        produce(settings, warm, producer)
        collector.wait({warm[0].spec.job_id}, timeout=180)
        try:
            yield settings, collector, producer
        finally:
            collector.close()


def throughput(bootstrap: str, endpoint: str, batch_size: int, jobs: int, data: Path) -> dict[str, Any]:
    """(b) jobs/s of a batch-lane backlog at one max batch size."""
    with running(bootstrap, endpoint, batch_size, data) as (settings, collector, producer):
        items = [item("batch") for _ in range(jobs)]
        began = time.time()
        produce(settings, items, producer)
        collector.wait({i.spec.job_id for i in items})
        elapsed = max(t for t, _ in (collector.done[i.spec.job_id] for i in items)) - began
        sizes = [collector.done[i.spec.job_id][1].batch_size for i in items]
    return {"batch_size": batch_size, "jobs": jobs, "seconds": round(elapsed, 3),
            "jobs_per_s": round(jobs / elapsed, 1), "mean_batch": round(statistics.mean(sizes), 1)}


def mixed(
    bootstrap: str, endpoint: str, data: Path, backlog: int, rate: float, seconds: float
) -> dict[str, Any]:
    """(c) a batch backlog plus ``rate`` interactive jobs/s for ``seconds``."""
    with running(bootstrap, endpoint, 32, data) as (settings, collector, producer):
        batch = [item("batch") for _ in range(backlog)]
        began = time.time()
        produce(settings, batch, producer)
        interactive: list[WorkItem] = []
        while time.time() - began < seconds:
            one = item("interactive")
            produce(settings, [one], producer)
            interactive.append(one)
            time.sleep(1.0 / rate)
        collector.wait({i.spec.job_id for i in batch + interactive})
    return {lane: lane_stats(collector, items, began)
            for lane, items in (("interactive", interactive), ("batch", batch))}


def lane_stats(collector: Collector, items: list[WorkItem], began: float) -> dict[str, Any]:
    latencies = sorted((collector.done[i.spec.job_id][0] - i.dispatched_at.timestamp()) * 1000 for i in items)
    end = max(collector.done[i.spec.job_id][0] for i in items)
    return {"jobs": len(items), "jobs_per_s": round(len(items) / (end - began), 1),
            "p50_ms": round(latencies[len(latencies) // 2], 1),
            "p99_ms": round(latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))], 1)}


def main() -> None:
    """Run the benchmarks, print a table, write JSON (``--only throughput`` skips the rest)."""
    global PROFILE
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", choices=["throughput", "mixed"], help="run one benchmark, write no JSON")
    parser.add_argument("--profile", help="run the worker under pyinstrument, text report to this path")
    args = parser.parse_args()
    PROFILE = args.profile
    bootstrap = os.environ.get("BRIGADE_BENCH_BOOTSTRAP", "127.0.0.1:19092")
    with tempfile.TemporaryDirectory() as tmp, emulator() as url:
        data = Path(tmp)
        if args.only == "throughput":
            print(json.dumps(throughput(bootstrap, url, 32, 3000, data)))
            return
        if args.only == "mixed":
            print(json.dumps(mixed(bootstrap, url, data, backlog=3000, rate=50.0, seconds=6.0)))
            return
        speedup = [throughput(bootstrap, url, 1, 300, data), throughput(bootstrap, url, 32, 3000, data)]
        load = mixed(bootstrap, url, data, backlog=3000, rate=50.0, seconds=6.0)
    report(speedup, load)


def report(speedup: list[dict[str, Any]], load: dict[str, Any]) -> None:
    """Print the tables and write ``bench/results/workers.json``."""
    factor = round(speedup[1]["jobs_per_s"] / speedup[0]["jobs_per_s"], 1)
    result = {"emulator": {"batch_latency_ms": GPU.batch_latency_ms, "item_latency_ms": GPU.item_latency_ms},
              "batching": speedup, "speedup": factor, "mixed": load}
    print("(b) batching through the worker (emulator 20 ms/batch + 0.5 ms/item)")
    print(f"{'max batch':>10} {'jobs':>6} {'seconds':>8} {'jobs/s':>8} {'mean batch':>11}")
    for row in speedup:
        print(f"{row['batch_size']:>10} {row['jobs']:>6} {row['seconds']:>8} {row['jobs_per_s']:>8} "
              f"{row['mean_batch']:>11}")
    print(f"speed-up: {factor}x")
    print("(c) mixed load: batch backlog + 50 interactive jobs/s")
    print(f"{'lane':>12} {'jobs':>6} {'jobs/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for lane, row in load.items():
        print(f"{lane:>12} {row['jobs']:>6} {row['jobs_per_s']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
