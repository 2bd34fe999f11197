"""``brigade processors``: run a job-processor worker (several share the partitions)."""

from __future__ import annotations

import logging
import socket
from typing import Annotated

import typer

from brigade.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the ``processors`` command to the ``brigade`` CLI."""
    app.command("processors")(processors)


def processors(
    ctx: typer.Context,
    node: Annotated[str, typer.Option(help="This process's name (RocksDB files, logs).")] = "",
    store: Annotated[str, typer.Option(help="Table store URL; default rocksdb:// if available.")] = "",
    metrics_port: Annotated[
        int | None, typer.Option(help="Prometheus /metrics port (0: off; default settings.metrics_port).")
    ] = None,
    loglevel: Annotated[str, typer.Option(help="Faust worker log level.")] = "info",
    delay_tiers: Annotated[bool, typer.Option(help="Also run the delay-tier agent.")] = True,
    instance: Annotated[str | None, typer.Option(
        help="Static group member name, unique per process: a restart under it takes its "
             "partitions back at once.")] = None,
) -> None:
    """Start a job-processor worker: state machine, routing, retries, leases, cancellation."""
    settings: Settings = ctx.obj
    port = settings.metrics_port if metrics_port is None else metrics_port
    run(settings, node=node, store=store, metrics_port=port, loglevel=loglevel, delay_tiers=delay_tiers,
        instance=instance)


def run(settings: Settings, *, node: str = "", store: str = "", metrics_port: int = 0,
        loglevel: str = "info", delay_tiers: bool = True, instance: str | None = None) -> None:
    """Build the app for ``settings`` and run its worker until stopped."""
    from prometheus_client import start_http_server

    from brigade.kafka.streams import attached
    from processors.app import create_app, run_worker
    from processors.metrics import Metrics

    app = create_app(settings, store=store or None, node=node or f"{socket.gethostname()}-processor",
                     batch_within_s=settings.processors_batch_window_ms / 1000.0, delay_tiers=delay_tiers,
                     instance=instance)
    if metrics_port:
        registry = attached(app, "metrics", Metrics).registry
        start_http_server(metrics_port, addr=settings.metrics_host, registry=registry)
    logging.getLogger("processors").setLevel(loglevel.upper())
    run_worker(app, loglevel=loglevel)
