"""One embedded stack (``brigade up``) for the whole hostile suite, attacked over its real interfaces.

The stack runs as ``make run`` runs it, except that the ``default`` pool's model is the
fault-free emulator (no torch start-up) and retries are quick. Besides the dev tenant made by
``brigade up``, the suite adds two ordinary tenants with ``brigade tenants add``: ``mallory``
(the attacker) and ``acme`` (the bystander whose jobs must keep working). Jobs of tenant
``waiter`` go to the ``slow`` pool, whose model takes ten minutes: they stay unfinished.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade.net import free_port
from brigade.settings import Settings
from cli.stack import stack_settings
from testkit.support import clean_env, http_ok, poll_until, stop_group

TERMINAL = {"succeeded", "failed", "cancelled"}
EMULATED = "emulated-minilm"
QUOTA_BYTES = 400 * 1024
LIMIT_CONCURRENCY = 200
MAX_WAITS_PER_TENANT = 20
MAX_WAITS = 40


def env() -> dict[str, str]:
    """The environment of a child process: no inherited ``BRIGADE_*`` overrides."""
    return clean_env(COLUMNS="250")


@dataclass
class Stack:
    """A running ``brigade up`` and the keys of its tenants."""

    home: Path
    settings: Settings
    url: str
    keys: dict[str, str]
    ports: dict[str, int]
    process: subprocess.Popen[bytes]
    operator_token: str = ""
    extra: dict[str, Any] = field(default_factory=dict)

    def client(self, tenant: str = "acme", **kwargs: Any) -> httpx.Client:
        """An httpx client authenticated as ``tenant`` ("" for none)."""
        headers = {"Authorization": f"Bearer {self.keys[tenant]}"} if tenant else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=60, **kwargs)

    def cli(self, *args: str, timeout_s: float = 120) -> subprocess.CompletedProcess[str]:
        """``brigade ARGS`` in the stack's directory, as an operator runs it."""
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.home, text=True,
                              capture_output=True, timeout=timeout_s, env=env(), check=False)

    def finished(self, job_id: str, tenant: str = "acme", timeout_s: float = 120) -> dict[str, Any]:
        """The job's status once terminal (polled with a deadline)."""
        with self.client(tenant) as client:

            def _terminal() -> dict[str, Any] | None:
                response = client.get(f"/v1/jobs/{job_id}")
                body: dict[str, Any] = response.json()
                return body if response.status_code == 200 and body["status"] in TERMINAL else None

            result: dict[str, Any] = poll_until(_terminal, timeout_s=timeout_s,
                                                what=f"job {job_id} to finish")
            return result

    def add_tenant(self, name: str, *options: str) -> str:
        """``brigade tenants add NAME OPTIONS``; the new key (also kept in ``keys``)."""
        self.keys[name] = _add_tenant(self.home, name, *options)
        poll_until(lambda: _authenticates(self, name), timeout_s=30, what=f"the API to load tenant {name}")
        return self.keys[name]

    def normal_job_succeeds(self, tenant: str = "acme", text: str | None = None) -> dict[str, Any]:
        """Submit an ordinary job and assert it succeeds: the stack still serves everyone."""
        with self.client(tenant) as client:
            response = client.post("/v1/jobs", json={"input": text or f"normal {time.time_ns()}"})
        assert response.status_code == 202, response.text
        status = self.finished(response.json()["jobId"], tenant)
        assert status["status"] == "succeeded", status
        return status


def _write_config(home: Path, ports: dict[str, int]) -> None:
    # An absolute store URL, so refs the API returns and refs the tests build agree.
    (home / "brigade.toml").write_text(f"""
default_pool = "default"
processors_metrics_port = {free_port()}
workers_metrics_port = {free_port()}
payload_quota_bytes = {QUOTA_BYTES}
object_store_url = "file://{home}/.brigade/objects"
[kafka]
bootstrap = "127.0.0.1:{ports['kafka']}"
broker_port = {ports['kafka']}
controller_port = {ports['controller']}
[api]
port = {ports['api']}
limit_concurrency = {LIMIT_CONCURRENCY}
max_waits_per_tenant = {MAX_WAITS_PER_TENANT}
max_waits = {MAX_WAITS}
[pools.default]
model = "{EMULATED}"
endpoint = "http://127.0.0.1:{ports['emulator']}"
kind = "openai-embeddings"
[pools.slow]
model = "{EMULATED}"
endpoint = "http://127.0.0.1:{ports['slow']}"
kind = "openai-embeddings"
timeout_s = 600
[[routes]]
pool = "slow"
tenant = "waiter"
[retry]
base_s = 0.2
""")


def _emulator(tmp_path_factory: pytest.TempPathFactory, name: str, latency_ms: int) -> Iterator[str]:
    port = free_port()
    log = (tmp_path_factory.mktemp(f"hostile-{name}") / "emulator.log").open("wb")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "model-server", "--emulate", "--port", str(port),
         "--batch-latency-ms", str(latency_ms), "--item-latency-ms", "0", "--model", EMULATED],
        stdout=log, stderr=subprocess.STDOUT, env=env(), start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: http_ok(f"{url}/healthz"), timeout_s=60, what=f"the {name} emulator")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()
        log.close()


@pytest.fixture(scope="session")
def emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The model emulator (a test tool) serving the ``default`` pool."""
    yield from _emulator(tmp_path_factory, "emulator", 0)


@pytest.fixture(scope="session")
def slow_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """An emulator that takes ten minutes per call: the ``slow`` pool, where tenant ``waiter`` goes."""
    yield from _emulator(tmp_path_factory, "slow", 600_000)


def _stop(process: subprocess.Popen[bytes], home: Path) -> None:
    stop_group(process)
    for entry in Path("/proc").iterdir():  # any child the supervisor left behind in this home
        if entry.name.isdigit():
            try:
                if os.readlink(entry / "cwd") == str(home):
                    os.kill(int(entry.name), signal.SIGKILL)
            except OSError:
                continue


def _add_tenant(home: Path, name: str, *options: str) -> str:
    added = subprocess.run([sys.executable, "-m", "cli", "tenants", "add", name, *options], cwd=home,
                           text=True, capture_output=True, timeout=60, env=env(), check=True)
    match = re.search(r"brg_[A-Za-z0-9_\-]+", added.stdout)
    assert match, added.stdout + added.stderr
    return match.group(0)


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory, emulator: str, slow_emulator: str) -> Iterator[Stack]:
    """``brigade up --no-model-server`` in a fresh directory, on free loopback ports."""
    home = tmp_path_factory.mktemp("hostile-stack")
    ports = {name: free_port() for name in ("kafka", "controller", "api")}
    ports["emulator"] = int(emulator.rsplit(":", 1)[1])
    ports["slow"] = int(slow_emulator.rsplit(":", 1)[1])
    _write_config(home, ports)
    with (home / "up.log").open("ab") as log:
        process = subprocess.Popen([sys.executable, "-m", "cli", "up", "--no-model-server"], cwd=home,
                                   env=env(), stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    url = f"http://127.0.0.1:{ports['api']}"
    try:
        credentials_path = home / ".brigade" / "dev-credentials.json"
        poll_until(lambda: http_ok(f"{url}/readyz") and credentials_path.exists(), timeout_s=420,
             what="the stack to be ready")
        keys = {"dev": json.loads(credentials_path.read_text())["apiKey"]}
        keys.update({name: _add_tenant(home, name) for name in ("acme", "mallory")})
        settings = stack_settings(home)
        token = (home / ".brigade" / "operator-token").read_text().strip()
        running = Stack(home, settings, url, keys, ports, process, operator_token=token)
        poll_until(lambda: _authenticates(running, "mallory"), timeout_s=30,
                   what="the API to load new tenants")
        running.normal_job_succeeds()
        yield running
    finally:
        _stop(process, home)


def _authenticates(stack: Stack, tenant: str) -> bool:
    with stack.client(tenant) as client:
        return client.get("/v1/jobs/none").status_code == 404
