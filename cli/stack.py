"""``brigade up``: the whole system on one machine, supervised as one command.

Order matters: the broker and topics first, then the model server (workers call it),
the API with its embedded projector (it owns the chDB files), the job processor, and the
workers. Stopping runs in reverse, and the broker stops last so every child can flush.
"""

from __future__ import annotations

import os
import signal
import socket
import sys
from pathlib import Path
from types import FrameType
from typing import Annotated
from urllib.parse import urlsplit

import httpx
import typer
from rich.console import Console

from brigade.endpoints import api_url
from brigade.errors import BrigadeError
from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.local import LocalKafka
from brigade.net import port_taken
from brigade.settings import Settings
from brigade.signing import callback_key
from cli.supervisor import ChildSpec, Supervisor


def _http_ok(url: str) -> bool:
    try:
        return httpx.get(url, timeout=1.0).status_code == 200
    except httpx.HTTPError:
        return False


def child_specs(settings: Settings, *, with_model_server: bool) -> list[ChildSpec]:
    """Every process of the embedded stack, in start order."""
    brigade = [sys.executable, "-m", "cli"]
    api = api_url(settings)
    specs = []
    if with_model_server:
        endpoint = settings.pools["default"].endpoint if "default" in settings.pools else ""
        port = endpoint.rsplit(":", 1)[-1].strip("/") or "8100"
        specs.append(ChildSpec(
            name="model", argv=[*brigade, "model-server", "--port", port],
            ready=lambda: _http_ok(f"{endpoint}/healthz"), ready_timeout_s=300,
        ))
    # Static group members: a crashed child restarted by the supervisor takes its partitions
    # back at once instead of waiting out its dead self's session.
    host = socket.gethostname()
    specs += [
        ChildSpec(name="api", argv=[*brigade, "api"], ready=lambda: _http_ok(f"{api}/healthz")),
        ChildSpec(name="processors", argv=[*brigade, "processors", "--instance", f"{host}-processors"],
                  env={"BRIGADE_METRICS_PORT": str(settings.processors_metrics_port)}),
        ChildSpec(name="workers",
                  argv=[*brigade, "workers", *_pool_args(settings), "--instance", f"{host}-workers"],
                  env={"BRIGADE_METRICS_PORT": str(settings.workers_metrics_port),
                       **_callback_env(settings)}),
    ]
    return specs


def metrics_endpoints(settings: Settings) -> list[str]:
    """Every ``/metrics`` URL of the embedded stack."""
    urls = [f"{api_url(settings)}/metrics"]
    ports = (settings.processors_metrics_port, settings.workers_metrics_port)
    urls += [f"http://127.0.0.1:{port}/metrics" for port in ports if port]
    urls += sorted({f"{pool.endpoint.rstrip('/')}/metrics" for pool in settings.pools.values()})
    return urls


def _refuse_taken_ports(settings: Settings, broker: LocalKafka, *, with_model_server: bool) -> None:
    """Fail before starting anything when another process already serves one of our ports.

    Otherwise readiness probes would find the other process answering and this stack would
    quietly talk to someone else's broker or API.
    """
    ports = {"api.port": (settings.api.host, settings.api.port)}
    if broker.pid() is None:
        ports["kafka.broker_port"] = ("127.0.0.1", settings.kafka.broker_port)
        ports["kafka.controller_port"] = ("127.0.0.1", settings.kafka.controller_port)
    if with_model_server and "default" in settings.pools:
        endpoint = urlsplit(settings.pools["default"].endpoint)
        ports["pools.default.endpoint"] = (endpoint.hostname or "127.0.0.1", endpoint.port or 80)
    taken = [f"{name} ({host}:{port})" for name, (host, port) in ports.items() if port_taken(host, port)]
    if taken:
        raise BrigadeError(
            "another process already listens on " + ", ".join(taken)
            + ": stop it (another `brigade up`?) or change those settings"
        )


def stack_settings(home: Path) -> Settings:
    """The settings of a stack whose working directory is ``home``, usable from elsewhere.

    ``brigade up`` reads ``home/brigade.toml`` and resolves its data paths against ``home``;
    a process running in another directory (a test, a benchmark) needs them absolute.
    """
    cwd = Path.cwd()
    os.chdir(home)
    try:
        settings = Settings()
    finally:
        os.chdir(cwd)
    return settings.model_copy(update={
        "data_dir": home / settings.data_dir,
        "clickhouse_url": _absolute_url(settings.clickhouse_url, "chdb://", home),
        "object_store_url": _absolute_url(settings.object_store_url, "file://", home),
    })


def _absolute_url(url: str, scheme: str, home: Path) -> str:
    # Only local paths move with the directory; server URLs stay as they are.
    if not url.startswith(scheme) or url[len(scheme):].startswith("/"):
        return url
    return f"{scheme}{home / url[len(scheme):]}"


def _callback_env(settings: Settings) -> dict[str, str]:
    """Callback signing for the embedded stack: a key made once and kept in the data dir.

    Private callback targets stay refused for every tenant but those in
    ``callbacks.private_tenants`` (the dev tenant by default): the workers' guard is the
    one that sees the resolved address, so it is never switched off wholesale here.
    """
    if settings.callbacks.secret_key is not None:
        return {}
    return {"BRIGADE_CALLBACKS__SECRET_KEY": callback_key(settings)}


def _pool_args(settings: Settings) -> list[str]:
    return [arg for pool in settings.pools for arg in ("--pool", pool)]


def up(settings: Settings, *, console: Console, with_model_server: bool = True) -> None:
    """Start the embedded stack and supervise it until SIGINT or SIGTERM."""
    from ingress.tenants import ensure_dev_tenant

    broker = LocalKafka.from_settings(settings)
    _refuse_taken_ports(settings, broker, with_model_server=with_model_server)
    console.print(f"starting kafka on {broker.bootstrap} …")
    broker.start()
    report = topology.apply(make_admin(settings), topology.Topology(settings).specs())
    console.print(f"topics: {len(report.created)} created, {len(report.unchanged)} unchanged")
    for line in report.drift:
        console.print(f"[yellow]topic drift:[/yellow] {line}")
    credentials = ensure_dev_tenant(settings)
    supervisor = Supervisor(log_dir=settings.path("logs"), console=console)

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        console.print(f"\n{signal.Signals(signum).name}: stopping …")
        supervisor.request_stop()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        for spec in child_specs(settings, with_model_server=with_model_server):
            supervisor.start(spec)
        _greet(console, credentials.url, credentials.tenant_id, credentials.api_key, settings)
        supervisor.run_until_stopped()
    finally:
        supervisor.stop_all()
        broker.stop()
        console.print("stopped; data kept under " + str(settings.data_dir))


def _greet(console: Console, url: str, tenant: str, key: str, settings: Settings) -> None:
    console.print(f"\n[bold green]Brigade is up[/bold green] at {url}  (tenant {tenant})")
    console.print(f"dev key: {key}  (also in {settings.path('dev-credentials.json')})")
    console.print("try:")
    console.print(
        f"  curl -s -X POST {url}/v1/jobs?wait=10 -H 'Authorization: Bearer {key}' "
        "-H 'Content-Type: application/json' -d '{\"input\": \"hello brigade\"}'",
        markup=False, highlight=False, soft_wrap=True,
    )
    console.print(f"logs: {settings.path('logs')}/  ·  Ctrl-C stops everything\n")


def register(app: typer.Typer) -> None:
    """Add ``up`` to the CLI."""

    @app.command("up")
    def _up(
        ctx: typer.Context,
        model_server: Annotated[bool, typer.Option(help="Start the built-in model server.")] = True,
    ) -> None:
        """Run the whole system on this machine until Ctrl-C."""
        up(ctx.obj, console=Console(), with_model_server=model_server)

    @app.command("demo")
    def _demo(
        ctx: typer.Context,
        jobs: Annotated[int, typer.Option(help="How many embedding jobs to submit.")] = 40,
        timeout: Annotated[float, typer.Option(help="Seconds to wait for every job.")] = 180.0,
    ) -> None:
        """Submit a mixed workload to the running stack and check every job ends as expected."""
        from cli import demo

        if not demo.run(ctx.obj, console=Console(), jobs=jobs, timeout_s=timeout):
            raise typer.Exit(1)

    @app.command("top")
    def _top(
        ctx: typer.Context,
        interval: Annotated[float, typer.Option(help="Seconds between refreshes.")] = 2.0,
        iterations: Annotated[int | None, typer.Option(help="Stop after this many refreshes.")] = None,
    ) -> None:
        """A live view of lag, throughput, latencies, retries, 429s, breakers and dead letters."""
        from brigade.kafka.clients import make_admin
        from cli import top

        settings: Settings = ctx.obj
        top.run(settings, make_admin(settings), metrics_endpoints(settings),
                interval_s=interval, iterations=iterations)
