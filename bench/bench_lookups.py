"""``GET /v1/jobs/{id}`` with 100,000 projected jobs: answered from memory vs from ClickHouse.

The API runs as ``brigade api`` (a real uvicorn socket, its embedded projector over chDB)
against a real broker (an embedded one on free ports unless ``--bootstrap`` names one).
Succeeded jobs' events (4 each) are produced to ``brigade.job-events`` and folded by the
API's own projector: first ``--evicted`` jobs, then ``--jobs`` more, with the status cache
sized ``--jobs`` plus ``--headroom`` (filler jobs projected in between, then the load's new
jobs, take that room), so the first ones were inserted into ClickHouse and then evicted.
Reads of the last jobs are answered from memory, reads of the first ones by ClickHouse: the
two paths of one endpoint, one process, one run. Each round measures both, quiet and while
another process produces ``--load-rate`` new events per second (the projector inserting
every ~100 ms), beside ``GET /healthz`` on the same socket (no look-up: the floor the HTTP
stack and the machine's run queue set); the order of the paths alternates between rounds. CPU is the API
process's (``/proc``); under load the CPU the API spent on the inserts alone in a phase
without reads is subtracted. Which side answered is read from ``/metrics``.

    .venv/bin/python -m bench.bench_lookups --jobs 100000 --evicted 10000
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import random
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from bench.bench_waits import _broker, _settings, _start_api
from bench.report import emit, percentile
from brigade.endpoints import operator_token_path
from brigade.kafka.clients import make_producer
from brigade.kafka.topology import Topology
from brigade.net import free_port
from brigade.settings import Settings
from ingress.tenants import TenantStore
from projections.simulate import job_events, key_of
from schemas.codec import Codec

_TENANT = "bench"
_TICK_S = os.sysconf("SC_CLK_TCK")


def _ids(prefix: str, count: int) -> list[str]:
    return [f"{prefix}-{i:07d}" for i in range(count)]


def _produce(settings: Settings, job_ids: list[str], *, rate: float = 0.0, stop: Any = None) -> None:
    """Every job's 4 events (succeeded); at most ``rate`` events/s when set, until ``stop`` is set."""
    producer = make_producer(settings, **{"linger.ms": 20, "batch.size": 1_000_000})
    topic, codec, started = Topology(settings).job_events, Codec(), time.monotonic()
    for index, job_id in enumerate(job_ids):
        for event in job_events(job_id, tenant_id=_TENANT, pool="default", model="m", path="succeeded",
                                start=datetime.now(UTC)):
            _send(producer, topic, key_of(event), codec.encode(event))
        if rate and (ahead := (index + 1) * 4 / rate - (time.monotonic() - started)) > 0:
            time.sleep(ahead)  # pacing the load, not synchronising anything
        if stop is not None and stop.is_set():
            break
    producer.flush(120)


def _send(producer: Any, topic: str, key: bytes, value: bytes) -> None:
    while True:
        try:
            producer.produce(topic, key=key, value=value)
            return
        except BufferError:
            producer.poll(0.05)


def _load(settings: Settings, stop: Any, rate: float) -> None:
    """The child process: new jobs at ``rate`` events/s until ``stop``."""
    _produce(settings, _ids(f"load-{os.getpid()}", 10_000_000), rate=rate, stop=stop)


class Api:
    """The API child process: HTTP, its CPU time and its read counters."""

    def __init__(self, url: str, pid: int, key: str, settings: Settings) -> None:
        self.url, self.pid, self.key = url, pid, key
        self._operator = operator_token_path(settings).read_text().strip()

    def cpu_s(self) -> float:
        """User + system CPU seconds of the API process so far."""
        fields = Path(f"/proc/{self.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / _TICK_S

    def reads(self) -> dict[str, float]:
        """``brigade_api_status_reads`` by source."""
        text = httpx.get(f"{self.url}/metrics", headers={"Authorization": f"Bearer {self._operator}"},
                         timeout=60).text
        out = {"memory": 0.0, "clickhouse": 0.0}
        for line in text.splitlines():
            for source in out:
                if line.startswith(f'brigade_api_status_reads_total{{source="{source}"}}'):
                    out[source] = float(line.split()[1])
        return out

    def status(self, job_id: str) -> str | None:
        """The job's status over HTTP (None for 404)."""
        response = httpx.get(f"{self.url}/v1/jobs/{job_id}", timeout=60,
                             headers={"Authorization": f"Bearer {self.key}"})
        return response.json()["status"] if response.status_code == 200 else None


def _wait_projected(api: Api, job_ids: list[str], timeout_s: float = 1800) -> float:
    """Poll until the last jobs read as succeeded; returns the seconds it took."""
    started = time.monotonic()
    probes = job_ids[-3:] + random.sample(job_ids, min(20, len(job_ids)))
    while time.monotonic() - started < timeout_s:
        if all(api.status(job) == "succeeded" for job in probes):
            return time.monotonic() - started
        time.sleep(1.0)
    raise RuntimeError("jobs not projected in time")


async def _get_loop(port: int, key: str, ids: list[str], stop_at: float, out: list[float]) -> None:
    # A bare keep-alive HTTP/1.1 client: the measurement should be the server's, not httpx's.
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    rng = random.Random()
    try:
        while time.perf_counter() < stop_at:
            path = f"/v1/jobs/{rng.choice(ids)}" if ids else "/healthz"
            request = f"GET {path} HTTP/1.1\r\nHost: b\r\nAuthorization: Bearer {key}\r\n\r\n".encode()
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
            await reader.readexactly(length)
            out.append(time.perf_counter() - started)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.decode(errors="replace"))
    finally:
        writer.close()


def _measure(api: Api, port: int, ids: list[str], seconds: float, connections: int) -> dict[str, Any]:
    latencies: list[float] = []
    reads, cpu = api.reads(), api.cpu_s()
    stop_at = time.perf_counter() + seconds

    async def run() -> None:
        await asyncio.gather(*(_get_loop(port, api.key, ids, stop_at, latencies) for _ in range(connections)))

    asyncio.run(run())
    cpu_used, after = api.cpu_s() - cpu, api.reads()
    answered = {k: after[k] - reads[k] for k in after}
    return {"latencies": latencies, "cpu_s": cpu_used, "seconds": seconds,
            "memory_share": answered["memory"] / max(1.0, sum(answered.values()))}


def _round(api: Api, port: int, ids: dict[str, list[str]], args: argparse.Namespace,
           flip: bool, settings: Settings) -> list[tuple[str, str, dict[str, Any]]]:
    order = ["memory", "clickhouse", "healthz"][:: -1 if flip else 1]
    out = [("quiet", path, _measure(api, port, ids[path], args.seconds, args.connections)) for path in order]
    stop = multiprocessing.get_context("spawn").Event()
    load = multiprocessing.get_context("spawn").Process(target=_load, args=(settings, stop, args.load_rate))
    load.start()
    try:
        time.sleep(3.0)  # let the load reach its rate before measuring
        cpu = api.cpu_s()
        time.sleep(args.seconds)
        baseline = {"cpu_per_s": (api.cpu_s() - cpu) / args.seconds}
        for path in order:
            phase = _measure(api, port, ids[path], args.seconds, args.connections)
            out.append(("under load", path, phase | baseline))
    finally:
        stop.set()
        load.join(60)
    return out


def _rows(phases: list[tuple[str, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    rows = []
    for condition in ("quiet", "under load"):
        for path in ("memory", "clickhouse", "healthz"):
            picked = [p for c, q, p in phases if c == condition and q == path]
            latencies = [x for p in picked for x in p["latencies"]]
            cpu = sum(p["cpu_s"] - p.get("cpu_per_s", 0.0) * p["seconds"] for p in picked)
            rows.append({
                "condition": condition, "path": path, "lookups": len(latencies),
                "answered_from_memory": round(sum(p["memory_share"] for p in picked) / len(picked), 3),
                "p50_ms": percentile(latencies, 0.5) * 1000, "p99_ms": percentile(latencies, 0.99) * 1000,
                "max_ms": max(latencies) * 1000,
                "cpu_ms_per_lookup": cpu / max(1, len(latencies)) * 1000,
            })
    for memory, clickhouse, floor in zip(rows[::3], rows[1::3], rows[2::3], strict=True):
        memory["p99_ratio_clickhouse_over_memory"] = clickhouse["p99_ms"] / memory["p99_ms"]
        clickhouse["p99_ratio_clickhouse_over_memory"] = floor["p99_ratio_clickhouse_over_memory"] = 1.0
    return rows


def run(args: argparse.Namespace) -> None:
    """Broker, API, 100,000 projected jobs, then the alternating rounds; emit the table."""
    with tempfile.TemporaryDirectory() as tmp, _broker(args.bootstrap, Path(tmp)) as bootstrap:
        settings, env = _settings(bootstrap, Path(tmp) / "data")
        env["BRIGADE_API__STATUS_CACHE_JOBS"] = str(args.jobs + args.headroom)
        store = TenantStore.from_settings(settings)
        key = store.add(_TENANT, requests_per_second=1e9, jobs_per_second=1e9)[1]
        port = free_port()
        process = _start_api(env, port, None, Path(tmp) / "api.log")
        api = Api(f"http://127.0.0.1:{port}", process.pid, key, settings)
        try:
            rows, facts = _scenario(api, port, settings, args)
        finally:
            process.terminate()
            process.wait(60)
    emit("lookups", f"GET /v1/jobs/{{id}}, {args.jobs:,} jobs in memory + {args.evicted:,} evicted", rows,
         extra={"command": "python -m bench.bench_lookups " + " ".join(sys.argv[1:]), **facts})


def _scenario(api: Api, port: int, settings: Settings,
              args: argparse.Namespace) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    # ``healthz``: the same HTTP stack answering without any look-up, the floor of this machine.
    ids = {"clickhouse": _ids("old", args.evicted), "memory": _ids("job", args.jobs), "healthz": []}
    started = time.monotonic()
    _produce(settings, ids["clickhouse"])
    _wait_projected(api, ids["clickhouse"])
    # The filler pushes the old jobs out of memory, and is pushed out in turn by the load's
    # new jobs, so that the measured jobs stay in memory throughout.
    _produce(settings, _ids("filler", args.headroom))
    _produce(settings, ids["memory"])
    projected_s = _wait_projected(api, ids["memory"]) + time.monotonic() - started
    phases: list[tuple[str, str, dict[str, Any]]] = []
    for index in range(args.rounds):
        phases += _round(api, port, ids, args, bool(index % 2), settings)
    facts = {"projected_jobs": args.jobs + args.evicted + args.headroom,
             "cache_jobs": args.jobs + args.headroom, "projection_s": round(projected_s, 1),
             "load_rate_events_per_s": args.load_rate, "connections": args.connections,
             "load_average_after": os.getloadavg()}
    return _rows(phases), facts


def memory_per_entry(count: int, result_chars: int) -> float:
    """Bytes the status cache retains per job (tracemalloc), for succeeded jobs with such a result."""
    import gc
    import tracemalloc
    import uuid

    from projections.fold import fold_events
    from projections.statuscache import StatusCache

    cache = StatusCache(max_jobs=count)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.get_traced_memory()[0]
    for start in range(0, count, 5_000):
        states = {}
        for _ in range(min(5_000, count - start)):
            tracked = fold_events(_succeeded(str(uuid.uuid4()), result_chars))
            assert tracked is not None
            states[tracked.job.job_id] = tracked
        cache.inserted(states, dict.fromkeys(states, 0))
        del states, tracked
    gc.collect()
    retained = tracemalloc.get_traced_memory()[0] - before
    tracemalloc.stop()
    return retained / len(cache)


def _succeeded(job_id: str, result_chars: int) -> list[Any]:
    from dataclasses import replace

    events: list[Any] = job_events(job_id, tenant_id=_TENANT, pool="default", model="m", path="succeeded",
                                   start=datetime.now(UTC))
    result = '"' + job_id + "x" * max(0, result_chars - len(job_id) - 2) + '"'  # a string of its own
    return [*events[:-1], replace(events[-1], result_inline=result, result_size=len(result))]


def main() -> None:
    """CLI entry point."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--bootstrap", default=os.environ.get("BRIGADE_BENCH_BOOTSTRAP"))
    parser.add_argument("--jobs", type=int, default=100_000, help="jobs answered from memory")
    parser.add_argument("--evicted", type=int, default=10_000, help="older jobs answered by ClickHouse")
    parser.add_argument("--headroom", type=int, default=40_000,
                        help="cache room beyond --jobs for the new jobs the load inserts")
    parser.add_argument("--seconds", type=float, default=5.0, help="per phase")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--load-rate", type=float, default=2000.0, help="events/s produced under load")
    parser.add_argument("--memory-only", action="store_true", help="only measure bytes per cached job")
    args = parser.parse_args()
    if args.memory_only:
        _emit_memory(args)
    else:
        run(args)


def _emit_memory(args: argparse.Namespace) -> None:
    rows = [{"inline result (characters)": chars, "jobs": args.jobs,
             "bytes_per_job": round(memory_per_entry(args.jobs, chars)),
             "held_in_memory": "yes" if chars <= 1024 else "no (over status_cache_inline_max)"}
            for chars in (20, 1000, 8000)]
    emit("lookups_memory", "Status cache memory per job (tracemalloc)", rows,
         extra={"command": "python -m bench.bench_lookups " + " ".join(sys.argv[1:])})


if __name__ == "__main__":
    main()
