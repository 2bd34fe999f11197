"""The chaos run's own stack, in a temporary directory, each process killable on its own.

Like ``brigade up`` it starts the broker(s) and topics, then the API with its embedded
projector, the job processors and the workers, supervised (a crashed child comes back with
backoff). Unlike it, there are two processors and several workers, each its own supervised
child, so the run can SIGKILL one at a time; the model is the fault-injecting emulator and
callbacks go to the run's own receiver.
"""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
from rich.console import Console

from brigade.errors import BrigadeError
from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.cluster import LocalCluster, free_port_run
from brigade.net import free_port
from brigade.settings import Settings
from cli.supervisor import ChildSpec, Supervisor

MODEL = "emulated-minilm"
TENANTS = ("chaos-a", "chaos-b", "chaos-c")


@dataclass(frozen=True, kw_only=True)
class StackOptions:
    """The shape of the chaos stack and of its model's faults."""

    brokers: int = 1
    workers: int = 2
    processors: int = 2
    rate_429: float = 0.02
    rate_5xx: float = 0.02
    rate_timeout: float = 0.005
    rate_slow: float = 0.01
    seed: int = 0


@dataclass(frozen=True, kw_only=True)
class ChaosStack:
    """A running chaos stack: what the run needs to drive and to judge it."""

    home: Path
    settings: Settings
    cluster: LocalCluster
    supervisor: Supervisor
    api_url: str
    emulator_url: str
    keys: dict[str, str]

    def brigade(self, *args: str, timeout_s: float = 600) -> subprocess.CompletedProcess[str]:
        """Run ``brigade ARGS`` in the stack's directory, as an operator would."""
        return subprocess.run([sys.executable, "-m", "cli", *args], cwd=self.home, env=_env(self.home),
                              capture_output=True, text=True, timeout=timeout_s, check=False)


def _env(home: Path) -> dict[str, str]:
    # Children read the stack's brigade.toml, never the caller's BRIGADE_* settings.
    env = {k: v for k, v in os.environ.items() if not k.startswith("BRIGADE_")}
    return {**env, "BRIGADE_CONFIG": str(home / "brigade.toml"), "COLUMNS": "200"}


def _ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def _await(check: Callable[[], bool], *, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        if time.monotonic() > deadline:
            raise BrigadeError(f"{what} not ready after {timeout_s:.0f}s")
        time.sleep(0.2)


def write_config(home: Path, *, options: StackOptions, emulator_port: int, callback_secret: str) -> Settings:
    """Write the stack's ``brigade.toml`` (absolute paths, free ports) and return its settings."""
    base = free_port_run(2 * options.brokers)
    data = home / ".brigade"
    text = f"""
data_dir = "{data}"
clickhouse_url = "chdb://{data}/clickhouse"
object_store_url = "file://{data}/objects"
# Results go to the object store, so the ledger can check the store itself.
inline_threshold_bytes = 1024
default_pool = "emulated"
[kafka]
bootstrap = "{','.join(f'127.0.0.1:{base + 2 * i}' for i in range(options.brokers))}"
broker_port = {base}
controller_port = {base + 1}
brokers = {options.brokers}
broker_heap = "{'320m' if options.brokers > 1 else '512m'}"
[api]
port = {free_port()}
lag_soft_limit = 10000000
lag_hard_limit = 20000000
[retry]
base_s = 0.2
lease_s = 30
# A backlog holds the dispatch deadline (it runs once the workers pass the item), so a short
# one re-dispatches only what was really stranded, and the run ends sooner.
dispatch_timeout_s = 60
retry_timer_grace_s = 30
[callbacks]
allow_private = true
secret_key = "{callback_secret}"
backoff_base_s = 0.2
backoff_cap_s = 5
[pools.emulated]
model = "{MODEL}"
endpoint = "http://127.0.0.1:{emulator_port}"
kind = "openai-embeddings"
timeout_s = 5
max_concurrency = 4
breaker_failures = 50
"""
    (home / "brigade.toml").write_text(text)
    return _settings_at(home)


def _settings_at(home: Path) -> Settings:
    # The stack's children read this file through BRIGADE_CONFIG; so does this process, once.
    saved = os.environ.get("BRIGADE_CONFIG")
    os.environ["BRIGADE_CONFIG"] = str(home / "brigade.toml")
    try:
        return Settings()
    finally:
        if saved is None:
            os.environ.pop("BRIGADE_CONFIG", None)
        else:
            os.environ["BRIGADE_CONFIG"] = saved


def child_specs(settings: Settings, options: StackOptions, home: Path) -> list[ChildSpec]:
    """The supervised children, in start order: API, processors, workers."""
    brigade = [sys.executable, "-m", "cli"]
    env = _env(home)
    api = f"http://{settings.api.host}:{settings.api.port}"
    specs = [ChildSpec(name="api", argv=[*brigade, "api"], env=env, ready=lambda: _ok(f"{api}/readyz"),
                       ready_timeout_s=300)]
    specs += [ChildSpec(name=f"processor-{n}", env=env,
                        argv=[*brigade, "processors", "--node", f"processor-{n}",
                              "--instance", f"processor-{n}", "--metrics-port", "0"])
              for n in range(1, options.processors + 1)]
    # Static members: a killed child restarted under its name takes its partitions back at
    # once instead of waiting out its dead self's session.
    specs += [ChildSpec(name=f"worker-{n}", env=env,
                        argv=[*brigade, "workers", "--pool", "emulated", "--instance", f"worker-{n}"])
              for n in range(1, options.workers + 1)]
    return specs


def _emulator(home: Path, port: int, options: StackOptions) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "cli", "model-server", "--emulate", "--port", str(port),
            "--model", MODEL, "--batch-latency-ms", "10", "--item-latency-ms", "0.2", "--gpu-slots", "2",
            "--rate-429", str(options.rate_429), "--retry-after-s", "1", "--rate-5xx", str(options.rate_5xx),
            "--rate-timeout", str(options.rate_timeout), "--hang-s", "8",
            "--rate-slow", str(options.rate_slow), "--slow-s", "2", "--seed", str(options.seed)]
    with (home / "emulator.log").open("wb") as log:
        return subprocess.Popen(argv, cwd=home, env=_env(home), stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)


def _tenants(settings: Settings) -> dict[str, str]:
    from ingress.tenants import TenantStore

    store = TenantStore.from_settings(settings)
    keys = {}
    for tenant in TENANTS:
        _, key = store.add(tenant, allow_private_callbacks=True, requests_per_second=100_000.0,
                           jobs_per_second=100_000.0)
        keys[tenant] = key
    return keys


@contextmanager
def chaos_stack(home: Path, options: StackOptions, *, console: Console) -> Iterator[ChaosStack]:
    """Start the whole stack under ``home``; stop every process on exit, the broker last."""
    emulator_port = free_port()
    settings = write_config(home, options=options, emulator_port=emulator_port,
                            callback_secret=secrets.token_hex(32))
    cluster = LocalCluster.from_settings(settings)
    emulator = _emulator(home, emulator_port, options)
    log = (home / "supervisor.log").open("w")
    supervisor = Supervisor(log_dir=settings.path("logs"), console=Console(file=log, width=200),
                            backoff_base_s=0.5, backoff_cap_s=4.0)
    try:
        console.print(f"starting {options.brokers} kafka broker(s) on {settings.kafka.bootstrap} …")
        cluster.start()
        report = topology.apply(make_admin(settings), topology.Topology(settings).specs())
        if report.drift:
            raise BrigadeError("topic drift in a fresh chaos stack: " + "; ".join(report.drift))
        keys = _tenants(settings)
        for spec in child_specs(settings, options, home):
            console.print(f"starting {spec.name} …")
            supervisor.start(spec)
        emulator_url = f"http://127.0.0.1:{emulator_port}"
        _await(lambda: _ok(f"{emulator_url}/healthz"), timeout_s=60,
               what=f"the emulator ({home}/emulator.log)")
        yield ChaosStack(home=home, settings=settings, cluster=cluster, supervisor=supervisor,
                         api_url=f"http://{settings.api.host}:{settings.api.port}",
                         emulator_url=emulator_url, keys=keys)
    finally:
        supervisor.stop_all()
        emulator.kill()
        emulator.wait()
        cluster.stop()
        log.close()

