"""Waits do not starve reads: another tenant's ``GET /v1/jobs/{id}`` while one tenant holds 500 waits.

The API runs as ``brigade api`` against a real broker (an embedded one on free ports unless
``--bootstrap`` names one) with its embedded projector over chDB, and no job processor: the
waited-on jobs never finish, the worst case for a waiter (it lasts its whole ``wait``).
Tenant ``reader`` measures ``GET /v1/jobs/{id}`` latency (4 keep-alive connections) with no
waits, then while tenant ``waiter`` holds ``--waiters`` concurrent ``POST /v1/jobs?wait=S``
requests, alternating ``--rounds`` times. ``--code DIR`` serves the API from another checkout
(to measure the code before a change with the same load).

    .venv/bin/python -m bench.bench_waits --waiters 500 --seconds 15
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from bench.report import emit, percentile
from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.local import LocalKafka
from brigade.net import free_port
from brigade.settings import KafkaSettings, Settings, TopicSettings
from ingress.tenants import TenantStore


@contextlib.contextmanager
def _broker(bootstrap: str | None, data_dir: Path) -> Iterator[str]:
    if bootstrap:
        yield bootstrap
        return
    broker = LocalKafka(data_dir=data_dir / "kafka", port=free_port(), controller_port=free_port())
    broker.start()
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def _settings(bootstrap: str, data_dir: Path) -> tuple[Settings, dict[str, str]]:
    prefix = f"benchw{uuid.uuid4().hex[:8]}"
    settings = Settings(
        data_dir=data_dir, kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix),
        topics=TopicSettings(partitions=3), clickhouse_url=f"chdb://{data_dir / 'ch'}",
        object_store_url=f"file://{data_dir / 'objects'}",
    )
    topology.apply(make_admin(settings), topology.Topology(settings).specs())
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("BRIGADE_")},
        "BRIGADE_CONFIG": "/nonexistent/brigade.toml",
        "BRIGADE_DATA_DIR": str(data_dir), "BRIGADE_KAFKA__BOOTSTRAP": bootstrap,
        "BRIGADE_KAFKA__TOPIC_PREFIX": prefix, "BRIGADE_CLICKHOUSE_URL": settings.clickhouse_url,
        "BRIGADE_OBJECT_STORE_URL": settings.object_store_url,
        "BRIGADE_API__LAG_SOFT_LIMIT": str(10**12), "BRIGADE_API__LAG_HARD_LIMIT": str(10**12),
    }
    return settings, env


def _start_api(env: dict[str, str], port: int, code: Path | None, log: Path) -> subprocess.Popen[bytes]:
    if code is not None:
        env = {**env, "PYTHONPATH": str(code)}
    # Checkouts from before the application shell moved to cli/ start it as ``-m brigade``.
    shell = "cli" if (code or Path.cwd()).joinpath("cli", "__main__.py").exists() else "brigade"
    argv = [sys.executable, "-m", shell, "api", "--port", str(port)]
    output = log.open("wb")  # the child owns it
    process = subprocess.Popen(argv, env=env, cwd=code or Path.cwd(), stdout=output, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return process
        if process.poll() is not None:
            raise RuntimeError(f"API exited; see {log}")
        time.sleep(0.2)
    process.kill()
    raise RuntimeError("API not ready in 120 s")


async def _reads(url: str, key: str, job_id: str, seconds: float, connections: int = 4) -> list[float]:
    latencies: list[float] = []
    stop_at = time.perf_counter() + seconds

    async def one() -> None:
        headers = {"Authorization": f"Bearer {key}"}
        async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
            while time.perf_counter() < stop_at:
                started = time.perf_counter()
                response = await client.get(f"/v1/jobs/{job_id}")
                latencies.append(time.perf_counter() - started)
                response.raise_for_status()

    await asyncio.gather(*(one() for _ in range(connections)))
    return latencies


async def _hold_waits(port: int, key: str, count: int, wait_s: float) -> list[asyncio.Task[int]]:
    async def one(index: int) -> int:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = f'{{"input":"wait {uuid.uuid4().hex}-{index}"}}'.encode()
        writer.write(f"POST /v1/jobs?wait={wait_s:g} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {key}\r\n"
                     f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n".encode() + body)
        head = await reader.readuntil(b"\r\n\r\n")
        writer.close()
        return int(head[9:12])

    return [asyncio.create_task(one(i)) for i in range(count)]


async def _scenario(
    url: str, port: int, keys: dict[str, str], args: argparse.Namespace
) -> list[dict[str, Any]]:
    headers = {"Authorization": f"Bearer {keys['reader']}"}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=120) as client:
        job_id = (await client.post("/v1/jobs", json={"input": "read me"})).json()["jobId"]
    await _reads(url, keys["reader"], job_id, 2)  # warm-up
    quiet: list[float] = []
    held: list[float] = []
    statuses: dict[int, int] = {}
    # Alternate the two conditions, so a busy moment of a shared machine hits both alike.
    for _ in range(args.rounds):
        quiet += await _reads(url, keys["reader"], job_id, args.seconds)
        waits = await _hold_waits(port, keys["waiter"], args.waiters, args.seconds + 15)
        await asyncio.sleep(5)  # let every wait reach the API before measuring
        held += await _reads(url, keys["reader"], job_id, args.seconds)
        for status in await asyncio.gather(*waits):
            statuses[status] = statuses.get(status, 0) + 1
    busy = _row(f"{args.waiters} waits by another tenant", args.waiters, held, statuses)
    return [_row("no waits", 0, quiet, {}), busy]


def _row(name: str, waiters: int, latencies: list[float], statuses: dict[int, int]) -> dict[str, Any]:
    return {
        "scenario": name, "waiters": waiters, "reads": len(latencies),
        "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
        "max_ms": max(latencies) * 1000 if latencies else float("nan"),
        "wait_answers": ", ".join(f"{k}: {v}" for k, v in sorted(statuses.items())) or "-",
    }


def run(args: argparse.Namespace) -> None:
    """Start a broker (unless given) and the API, run both scenarios, emit the table."""
    with tempfile.TemporaryDirectory() as tmp, _broker(args.bootstrap, Path(tmp)) as bootstrap:
        settings, env = _settings(bootstrap, Path(tmp) / "data")
        store = TenantStore.from_settings(settings)
        keys = {name: store.add(name, requests_per_second=1e6, jobs_per_second=1e6)[1]
                for name in ("reader", "waiter")}
        port = free_port()
        process = _start_api(env, port, args.code, Path(tmp) / "api.log")
        try:
            rows = asyncio.run(_scenario(f"http://127.0.0.1:{port}", port, keys, args))
        finally:
            process.terminate()
            process.wait(60)
    label = "code under test" if args.code is None else f"code from {args.code}"
    title = f"GET /v1/jobs/{{id}} latency of one tenant while another holds waits ({label})"
    emit(f"waits{args.suffix}", title, rows,
         extra={"command": "python -m bench.bench_waits " + " ".join(sys.argv[1:])})


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("BRIGADE_BENCH_BOOTSTRAP"))
    parser.add_argument("--waiters", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=15.0, help="per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="alternations of the two conditions")
    parser.add_argument("--code", type=Path, default=None, help="serve the API from this checkout")
    parser.add_argument("--suffix", default="", help="appended to the results file name")
    run(parser.parse_args())


if __name__ == "__main__":
    main()
