"""Ingress throughput: sustained ``POST /v1/jobs`` and ``POST /v1/jobs:batch`` with durable acks.

The API runs as ``brigade api`` (uvicorn, 1 and 2 worker processes) against a real broker;
every 202 means the command is in Kafka with ``acks=all``. The load generator is a minimal
keep-alive HTTP/1.1 client on raw asyncio streams, so it takes as little of the machine's
CPU as possible (it shares the cores with the API and the broker). Every body is unique:
a repeated one would be answered as a duplicate without producing.

    BRIGADE_BENCH_BOOTSTRAP=127.0.0.1:19092 .venv/bin/python -m bench.bench_ingress
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.budget import cpu_seconds
from bench.report import emit, percentile
from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.net import free_port
from brigade.settings import KafkaSettings, Settings, TopicSettings
from ingress.tenants import TenantStore
from testkit.support import http_ok, poll_until


async def _request(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, raw: bytes) -> int:
    writer.write(raw)
    head = await reader.readuntil(b"\r\n\r\n")
    status = int(head[9:12])
    length = 0
    for line in head.split(b"\r\n"):
        if line[:15].lower() == b"content-length:":
            length = int(line[15:])
    await reader.readexactly(length)
    return status


def _post(path: str, body: bytes, key: str) -> bytes:
    return (
        f"POST {path} HTTP/1.1\r\nHost: bench\r\nAuthorization: Bearer {key}\r\n"
        f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _connection(
    port: int,
    key: str,
    path: str,
    make_body: Any,
    stop_at: float,
    latencies: list[float],
    statuses: dict[int, int],
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    try:
        while time.perf_counter() < stop_at:
            raw = _post(path, make_body(), key)
            started = time.perf_counter()
            status = await _request(reader, writer, raw)
            latencies.append(time.perf_counter() - started)
            statuses[status] = statuses.get(status, 0) + 1
    finally:
        writer.close()


async def _load(
    port: int, key: str, path: str, make_body: Any, *, concurrency: int, seconds: float
) -> tuple[list[float], dict[int, int], float]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    started = time.perf_counter()
    stop_at = started + seconds
    await asyncio.gather(
        *(_connection(port, key, path, make_body, stop_at, latencies, statuses) for _ in range(concurrency))
    )
    return latencies, statuses, time.perf_counter() - started


def _single_body(counter: itertools.count[int]) -> Any:
    run = uuid.uuid4().hex[:8]
    return lambda: b'{"input":"bench ' + f"{run}-{next(counter)}".encode() + b'","priority":"interactive"}'


def _batch_body(counter: itertools.count[int], size: int) -> Any:
    run = uuid.uuid4().hex[:8]

    def make() -> bytes:
        jobs = ",".join(f'{{"input":"bench {run}-{next(counter)}"}}' for _ in range(size))
        return f'{{"jobs":[{jobs}]}}'.encode()

    return make


def _start_api(env: dict[str, str], port: int, workers: int) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "cli", "api", "--port", str(port), "--workers", str(workers)]
    log = open(Path(env["BRIGADE_DATA_DIR"]) / f"api-{port}.log", "wb")  # noqa: SIM115 (the child owns it)
    process = subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)
    def ready() -> bool:
        if process.poll() is not None:
            raise RuntimeError(f"API exited; see {log.name}")
        return http_ok(f"http://127.0.0.1:{port}/readyz", timeout_s=1.0)

    try:
        poll_until(ready, timeout_s=60, interval_s=0.2, what="the API to be ready")
    except AssertionError:
        process.kill()
        raise
    return process


def _row(
    name: str,
    workers: int,
    concurrency: int,
    jobs_per_request: int,
    measured: tuple[tuple[list[float], dict[int, int], float], float],
) -> dict[str, Any]:
    (latencies, statuses, elapsed), cpu_s = measured
    ok = statuses.get(202, 0) + statuses.get(200, 0)
    jobs = ok * jobs_per_request
    return {
        "scenario": name,
        "workers": workers,
        "concurrency": concurrency,
        "requests": len(latencies),
        "accepted_jobs_per_s": jobs / elapsed,
        # Steadier than jobs/s on shared cores: what one job costs the API, whatever the load.
        "api_cpu_us_per_job": cpu_s / jobs * 1e6 if jobs else float("nan"),
        "requests_per_s": len(latencies) / elapsed,
        "p50_ms": percentile(latencies, 0.5) * 1000,
        "p99_ms": percentile(latencies, 0.99) * 1000,
        "non_2xx": sum(v for k, v in statuses.items() if k not in (200, 202)),
    }


def _environment(bootstrap: str, data_dir: Path) -> tuple[dict[str, str], Settings]:
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=data_dir,
        kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix),
        topics=TopicSettings(partitions=6),
        clickhouse_url=f"chdb://{data_dir / 'ch'}",
        object_store_url=f"file://{data_dir / 'objects'}",
    )
    topology.apply(make_admin(settings), topology.Topology(settings).specs())
    env = {
        **os.environ,
        "BRIGADE_DATA_DIR": str(data_dir),
        "BRIGADE_KAFKA__BOOTSTRAP": bootstrap,
        "BRIGADE_KAFKA__TOPIC_PREFIX": prefix,
        "BRIGADE_CLICKHOUSE_URL": settings.clickhouse_url,
        "BRIGADE_OBJECT_STORE_URL": settings.object_store_url,
        # No processor runs here, so the backlog only grows: keep shedding out of the measurement.
        "BRIGADE_API__LAG_SOFT_LIMIT": str(10**12),
        "BRIGADE_API__LAG_HARD_LIMIT": str(10**12),
    }
    return env, settings


@dataclass(frozen=True, slots=True, kw_only=True)
class Options:
    """How long and how hard each scenario runs."""

    seconds: float
    concurrency: int
    batch_size: int


def _tree_cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its descendants (uvicorn's workers are its children)."""
    children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    return cpu_seconds(pid) + sum(_tree_cpu_seconds(int(child)) for child in children)


def _measured(pid: int, run: Any) -> tuple[tuple[list[float], dict[int, int], float], float]:
    """``run()``'s result and the API's CPU seconds during it (load generator excluded)."""
    before = _tree_cpu_seconds(pid)
    result = run()
    return result, _tree_cpu_seconds(pid) - before


def _scenarios(
    api: tuple[int, int],
    key: str,
    counter: itertools.count[int],
    *,
    only: set[str],
    workers: int,
    options: Options,
) -> list[dict[str, Any]]:
    """The selected scenarios against one running API, after a short warm-up."""
    rows = []
    (port, pid), concurrency, seconds = api, options.concurrency, options.seconds
    asyncio.run(_load(port, key, "/v1/jobs", _single_body(counter), concurrency=concurrency, seconds=2))
    if "single" in only:
        one = _single_body(counter)
        load = _load(port, key, "/v1/jobs", one, concurrency=concurrency, seconds=seconds)
        single = _measured(pid, lambda: asyncio.run(load))
        rows.append(_row("POST /v1/jobs", workers, concurrency, 1, single))
    if "batch" in only:
        size, body = options.batch_size, _batch_body(counter, options.batch_size)
        load = _load(port, key, "/v1/jobs:batch", body, concurrency=4, seconds=seconds)
        batch = _measured(pid, lambda: asyncio.run(load))
        rows.append(_row(f"POST /v1/jobs:batch ({size}/req)", workers, 4, size, batch))
    return rows


def run(bootstrap: str, *, workers_list: list[int], only: set[str], options: Options) -> None:
    """Run every selected scenario (``single``, ``batch``) for each worker count and emit the table."""
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        env, settings = _environment(bootstrap, Path(tmp))
        _, key = TenantStore.from_settings(settings).add(
            "bench", requests_per_second=1e6, jobs_per_second=1e7
        )
        counter = itertools.count()
        for workers in workers_list:
            port = free_port()  # other benchmarks and tests share the machine
            process = _start_api(env, port, workers)
            # A profiler can attach to the API from here (its pid is the server's, or uvicorn's parent).
            print(f"API pid {process.pid} on port {port}", file=sys.stderr, flush=True)
            try:
                api = (port, process.pid)
                rows += _scenarios(api, key, counter, only=only, workers=workers, options=options)
            finally:
                process.terminate()
                process.wait(30)
                print(Path(tmp, f"api-{port}.log").read_text()[-3000:], file=sys.stderr)
    emit(
        "ingress",
        "Ingress: accepted jobs/s with durable acks (acks=all, idempotent producer)",
        rows,
        extra={
            "command": "python -m bench.bench_ingress " + " ".join(sys.argv[1:]),
            "notes": json.dumps({"seconds": options.seconds, "cpus": os.cpu_count()}),
        },
    )


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("BRIGADE_BENCH_BOOTSTRAP", "127.0.0.1:19092"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--batch-size", type=int, default=500)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument(
        "--only", choices=["single", "batch"], action="append", help="run only these scenarios (repeatable)"
    )
    args = parser.parse_args()
    options = Options(seconds=args.seconds, concurrency=args.concurrency, batch_size=args.batch_size)
    only = set(args.only or ["single", "batch"])
    run(args.bootstrap, workers_list=args.workers, only=only, options=options)


if __name__ == "__main__":
    main()
