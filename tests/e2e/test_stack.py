"""The whole embedded stack, started as a user starts it (`brigade up`), used over its real
interfaces: HTTP, the producer SDK, the CLI. Ends with Ctrl-C, a restart, and the data
still there.
"""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade.net import free_port
from brigade.status import TERMINAL
from cli.stack import stack_settings
from ingress.client import ApiRequestError, Client
from ingress.producer import JobProducer
from testkit.support import RunningStack, clean_env, http_ok, poll_until, stack_toml, stop_group

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

EMULATED = "emulated-minilm"


@dataclass
class Stack(RunningStack):
    """A running `brigade up`, its process, and what a user knows about it."""

    process: subprocess.Popen[bytes]

    def client(self, api_key: str | None = None) -> Client:
        """An HTTP client for the dev tenant (or another key)."""
        return Client(self.url, api_key=api_key or self.api_key, timeout_s=60)

    def cli(self, *args: str, timeout_s: float = 180) -> subprocess.CompletedProcess[str]:
        """Run `brigade ARGS` in the stack's directory, as an operator would."""
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.home, text=True,
                              capture_output=True, timeout=timeout_s, env=_env(), check=False)


def _env() -> dict[str, str]:
    # The stack reads its brigade.toml; a wide terminal keeps rich from eliding table cells.
    return clean_env(COLUMNS="250")


def _write_config(home: Path, ports: dict[str, int]) -> None:
    toml = stack_toml(ports, emulated_model=EMULATED, extra="[retry]\nbase_s = 0.2")
    (home / "brigade.toml").write_text(toml)


def _start_up(home: Path) -> subprocess.Popen[bytes]:
    with (home / "up.log").open("ab") as log:
        return subprocess.Popen([sys.executable, "-m", "cli", "up"], cwd=home, env=_env(),
                                stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _stack_processes(home: Path) -> list[int]:
    """Every process whose working directory is the stack's home (all of `up`'s children)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(home):
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def _wait_ready(stack_home: Path, url: str) -> dict[str, str]:
    credentials_path = stack_home / ".brigade" / "dev-credentials.json"
    poll_until(lambda: http_ok(f"{url}/readyz") and credentials_path.exists(), timeout_s=420,
          what="the stack to be ready")
    credentials: dict[str, str] = json.loads(credentials_path.read_text())
    return credentials


@pytest.fixture(scope="module")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The fault-injecting emulator (a test tool) serving the `emulated` pool."""
    port = free_port()
    log = (tmp_path_factory.mktemp("emulator") / "emulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "model-server", "--emulate", "--port", str(port),
         "--batch-latency-ms", "0", "--item-latency-ms", "0", "--model", EMULATED],
        stdout=log, stderr=subprocess.STDOUT, env=_env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: http_ok(f"{url}/healthz"), timeout_s=60, what="the emulator")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator: str) -> Iterator[Stack]:
    """`brigade up` in a fresh directory, on free ports."""
    home = tmp_path_factory.mktemp("stack")
    ports = {name: free_port() for name in ("kafka", "controller", "api", "model")}
    ports["emulator"] = int(emulator.rsplit(":", 1)[1])
    _write_config(home, ports)
    process = _start_up(home)
    url = f"http://127.0.0.1:{ports['api']}"
    running: Stack | None = None
    try:
        credentials = _wait_ready(home, url)
        running = Stack(home, stack_settings(home), url, credentials["apiKey"], credentials["tenantId"],
                        emulator, process)
        yield running
    finally:
        # The restart test replaces the process: stop whichever `brigade up` runs now.
        current = running.process if running is not None else process
        stop_group(current)
        for pid in _stack_processes(home):
            os.kill(pid, signal.SIGKILL)


def _cosine(a: list[float], b: list[float]) -> float:
    dot = sum(x * y for x, y in zip(a, b, strict=True))
    return dot / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def _status(client: Client, job_id: str) -> dict[str, Any] | None:
    """The job's status; None while a job submitted elsewhere (the SDK) is not projected yet."""
    try:
        return client.get(job_id)
    except ApiRequestError as exc:
        if exc.status == 404:
            return None
        raise


def _finished(client: Client, job_id: str, timeout_s: float = 120) -> dict[str, Any]:
    return poll_until(lambda: (s := _status(client, job_id)) is not None and s["status"] in TERMINAL and s,
                 timeout_s=timeout_s, what=f"job {job_id} to finish")  # type: ignore[no-any-return]


def test_real_embeddings_over_http(stack: Stack) -> None:
    texts = ["A man is playing a guitar.", "Someone plays the guitar.", "The stock market fell today."]
    with stack.client() as client:
        ids = [client.submit({"input": t, "priority": "interactive"}, wait=30)["jobId"] for t in texts]
        vectors = []
        for job_id in ids:
            assert _finished(client, job_id)["status"] == "succeeded"
            vectors.append(client.result(job_id)["output"]["embedding"])
    assert [len(v) for v in vectors] == [384, 384, 384]
    assert _cosine(vectors[0], vectors[1]) > _cosine(vectors[0], vectors[2]) + 0.2


def test_producer_sdk_jobs_finish(stack: Stack) -> None:
    with JobProducer(settings=stack.settings, tenant_id=stack.tenant_id) as producer:
        futures = [producer.submit({"input": f"sdk job {i}", "priority": "batch"}) for i in range(8)]
        producer.flush()
        ids = [f.result(30).job_id for f in futures]
    with stack.client() as client:
        assert {_finished(client, job_id)["status"] for job_id in ids} == {"succeeded"}


def test_idempotency_key_maps_to_one_job(stack: Stack) -> None:
    with stack.client() as client:
        first = client.submit({"input": "same request"}, idempotency_key="e2e-key-1")
        again = client.submit({"input": "same request"}, idempotency_key="e2e-key-1")
        assert again["jobId"] == first["jobId"]
        with pytest.raises(ApiRequestError) as conflict:
            client.submit({"input": "another request"}, idempotency_key="e2e-key-1")
        assert conflict.value.status == 409
        _finished(client, first["jobId"])
        submitted = [e for e in client.events(first["jobId"]) if e["type"] == "JobSubmitted"]
    assert len(submitted) == 1


def _emulator_config(stack: Stack, **changes: Any) -> None:
    response = httpx.post(f"{stack.emulator_url}/_emulator/config", json=changes, timeout=5)
    response.raise_for_status()


def test_cancel_while_running_discards_the_outcome(stack: Stack) -> None:
    _emulator_config(stack, batch_latency_ms=4000)
    try:
        with stack.client() as client:
            job = client.submit({"input": "slow job", "modelHint": EMULATED, "priority": "interactive"})
            poll_until(lambda: client.get(job["jobId"])["status"] == "running", timeout_s=60,
                  what="the job to start")
            client.cancel(job["jobId"], reason="e2e")
            assert _finished(client, job["jobId"])["status"] == "cancelled"
    finally:
        _emulator_config(stack, batch_latency_ms=0)


def test_retry_after_an_injected_429(stack: Stack) -> None:
    _emulator_config(stack, rate_429=1.0, retry_after_s=1.0)
    with stack.client() as client:
        job = client.submit({"input": "rate limited", "modelHint": EMULATED, "maxAttempts": 5})
        try:
            poll_until(lambda: any(e["type"] == "JobRetryScheduled" for e in client.events(job["jobId"])),
                  timeout_s=60, what="a retry to be scheduled")
        finally:
            _emulator_config(stack, rate_429=0.0)
        assert _finished(client, job["jobId"])["status"] == "succeeded"
        types = [e["type"] for e in client.events(job["jobId"])]
    assert types.count("JobStarted") >= 2


def test_tenants_do_not_see_each_other(stack: Stack) -> None:
    added = stack.cli("tenants", "add", "other-tenant")
    assert added.returncode == 0, added.stderr
    other_key = added.stdout.strip().splitlines()[-1]
    with stack.client() as mine, stack.client(other_key) as theirs:
        job = mine.submit({"input": "private to dev"})
        _finished(mine, job["jobId"])
        for read in (theirs.get, theirs.result, theirs.events):
            with pytest.raises(ApiRequestError) as hidden:
                read(job["jobId"])
            assert hidden.value.status == 404


def test_query_and_replay_agree_with_what_was_submitted(stack: Stack) -> None:
    with stack.client() as client:
        ids = [client.submit({"input": f"counted {i}"})["jobId"] for i in range(5)]
        for job_id in ids:
            _finished(client, job_id)
    report = stack.cli("query", "--sql", "SELECT count() AS n FROM jobs FINAL WHERE status = 'succeeded'",
                       "--format", "json")
    assert report.returncode == 0, report.stderr
    assert json.loads(report.stdout)["rows"][0]["n"] >= len(ids)
    replay = stack.cli("replay")
    assert replay.returncode == 0, replay.stdout + replay.stderr
    assert "no differences" in replay.stdout
    audit = stack.cli("audit", ids[0])
    assert audit.returncode == 0, audit.stderr
    assert "JobSucceeded" in audit.stdout


def test_ctrl_c_stops_everything_and_restart_keeps_the_data(stack: Stack) -> None:
    with stack.client() as client:
        job = client.submit({"input": "survive a restart"}, idempotency_key="e2e-restart")
        before = _finished(client, job["jobId"])
        vector = client.result(job["jobId"])["output"]["embedding"]
    # When the user presses Ctrl-C
    started = time.monotonic()
    os.killpg(stack.process.pid, signal.SIGINT)
    stack.process.wait(60)
    assert time.monotonic() - started < 30
    poll_until(lambda: not _stack_processes(stack.home), timeout_s=10, what="every process to exit")
    # Then after starting again, the job, its result and its history are still there
    stack.process = _start_up(stack.home)
    _wait_ready(stack.home, stack.url)
    with stack.client() as client:
        after = poll_until(lambda: (s := client.get(job["jobId"]))["status"] == "succeeded" and s,
                      timeout_s=120, what="the job to be visible after restart")
        assert after["status"] == before["status"]
        assert client.result(job["jobId"])["output"]["embedding"] == vector
        again = client.submit({"input": "survive a restart"}, idempotency_key="e2e-restart")
        assert again["jobId"] == job["jobId"]
