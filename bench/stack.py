"""Start the embedded stack the way a user does (``brigade up``), for benchmarks.

The default pool serves the real all-MiniLM-L6-v2 through the built-in model server; an
``emulated`` pool points at the fault-injecting emulator (a benchmark tool) so the
orchestration cost can be measured apart from model time.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx

from brigade.errors import BrigadeError
from brigade.net import free_port
from brigade.settings import Settings
from cli.stack import stack_settings

EMULATED = "emulated-minilm"


@dataclass(frozen=True)
class RunningStack:
    """What a benchmark needs to talk to the stack."""

    home: Path
    settings: Settings
    url: str
    api_key: str
    tenant_id: str
    emulator_url: str


def _clean_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if not k.startswith("BRIGADE_")}


def _wait(url: str, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.25)
    raise BrigadeError(f"{url} not ready after {timeout_s}s")


def _config(ports: dict[str, int], *, model_server: bool) -> str:
    default = f"""
[pools.default]
model = "all-MiniLM-L6-v2"
endpoint = "http://127.0.0.1:{ports['model']}"
kind = "openai-embeddings"
""" if model_server else ""
    return f"""
default_pool = "{'default' if model_server else 'emulated'}"
[kafka]
bootstrap = "127.0.0.1:{ports['kafka']}"
broker_port = {ports['kafka']}
controller_port = {ports['controller']}
[api]
port = {ports['api']}
lag_soft_limit = 10000000
lag_hard_limit = 20000000
{default}
[pools.emulated]
model = "{EMULATED}"
endpoint = "http://127.0.0.1:{ports['emulator']}"
kind = "openai-embeddings"
max_concurrency = 8
batch = {{ max_batch_size = 256, max_delay_ms = 20, token_budget = 1000000 }}
"""


@contextmanager
def embedded_stack(*, model_server: bool, batch_latency_ms: float = 0.0,
                   item_latency_ms: float = 0.0) -> Iterator[RunningStack]:
    """A fresh ``brigade up`` (and an emulator) in a temporary directory, stopped on exit."""
    with tempfile.TemporaryDirectory(prefix="brigade-bench-") as folder:
        home = Path(folder)
        ports = {n: free_port() for n in ("kafka", "controller", "api", "model", "emulator")}
        (home / "brigade.toml").write_text(_config(ports, model_server=model_server))
        env = _clean_env()
        with (home / "emulator.log").open("wb") as log:
            emulator = subprocess.Popen(
                [sys.executable, "-m", "cli", "model-server", "--emulate",
                 "--port", str(ports["emulator"]),
                 "--batch-latency-ms", str(batch_latency_ms), "--item-latency-ms", str(item_latency_ms),
                 "--model", EMULATED, "--gpu-slots", "4"],
                cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        with (home / "up.log").open("wb") as log:
            argv = [sys.executable, "-m", "cli", "up"] + ([] if model_server else ["--no-model-server"])
            up = subprocess.Popen(argv, cwd=home, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True)
        url = f"http://127.0.0.1:{ports['api']}"
        try:
            emulator_url = f"http://127.0.0.1:{ports['emulator']}"
            _wait(f"{emulator_url}/healthz", 60)
            _wait(f"{url}/readyz", 420)
            credentials = json.loads((home / ".brigade" / "dev-credentials.json").read_text())
            yield RunningStack(home, stack_settings(home), url, credentials["apiKey"],
                               credentials["tenantId"], emulator_url)
        finally:
            for process in (up, emulator):
                if process.poll() is None:
                    os.killpg(process.pid, signal.SIGINT)
            for process in (up, emulator):
                try:
                    process.wait(60)
                except subprocess.TimeoutExpired:
                    os.killpg(process.pid, signal.SIGKILL)
                    process.wait()
