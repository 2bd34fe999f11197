"""Peer baseline: no-op jobs through Celery + Redis (acks_late), started on loopback.

    .venv/bin/python -m bench.bench_celery
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager

import redis

from bench.report import emit
from brigade.errors import BrigadeError
from brigade.net import free_port
from testkit.support import stop_group


@contextmanager
def redis_server() -> Iterator[str]:
    """A throwaway Redis on loopback (Debian's redis-server), yielding its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise BrigadeError("redis-server is needed for the Celery baseline (apt-get install redis-server)")
    port = free_port()
    with tempfile.TemporaryDirectory() as folder:
        process = subprocess.Popen(
            [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", folder],
            stdout=subprocess.DEVNULL,
        )
        try:
            client = redis.Redis(port=port)
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.ping()
                    break
                except redis.ConnectionError:
                    if time.monotonic() > deadline:
                        raise
                    time.sleep(0.05)
            yield f"redis://127.0.0.1:{port}/0"
        finally:
            process.terminate()
            process.wait(10)


@contextmanager
def celery_worker(url: str, concurrency: int) -> Iterator[None]:
    """A Celery worker process for ``bench.celery_noop``."""
    env = {**os.environ, "BRIGADE_BENCH_REDIS_URL": url}
    process = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "bench.celery_noop", "worker", "-P", "prefork",
         "--concurrency", str(concurrency), "--without-gossip", "--without-mingle",
         "--without-heartbeat", "-l", "warning"],
        env=env, start_new_session=True,
    )
    try:
        yield
    finally:
        stop_group(process, sig=signal.SIGTERM, timeout_s=20)


def celery_jobs_per_second(n: int, *, concurrency: int = 2) -> dict[str, float]:
    """Submit ``n`` no-op tasks and wait for every result; return the end-to-end rate."""
    with redis_server() as url:
        os.environ["BRIGADE_BENCH_REDIS_URL"] = url
        from bench import celery_noop

        celery_noop.app.conf.broker_url = url
        celery_noop.app.conf.result_backend = url
        with celery_worker(url, concurrency):
            celery_noop.noop.delay("warm-up").get(timeout=60)
            start = time.perf_counter()
            results = [celery_noop.noop.delay(f"job-{i}") for i in range(n)]
            for result in results:
                result.get(timeout=300)
            elapsed = time.perf_counter() - start
    return {"jobs": n, "seconds": elapsed, "jobs_per_s": n / elapsed}


def main(n: int = 5000) -> None:
    """Run the baseline alone (the whole-stack benchmark runs it beside Brigade)."""
    emit("celery", "Celery + Redis, no-op tasks (acks_late)", [
        {"system": "celery+redis", **celery_jobs_per_second(n)}])


if __name__ == "__main__":
    main()
