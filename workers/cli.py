"""``brigade workers --pool NAME [--pool NAME]``: run the worker Faust app for some pools."""

from __future__ import annotations

from typing import Annotated

import typer

from brigade.settings import Settings


def register(app: typer.Typer) -> None:
    """Add the ``workers`` command to the ``brigade`` CLI."""

    @app.command("workers")
    def workers(
        ctx: typer.Context,
        pool: Annotated[list[str], typer.Option("--pool", help="A pool to serve (repeatable).")],
        store: Annotated[
            str, typer.Option(help="Faust table store: memory:// or rocksdb:// (needs rocksdict).")
        ] = "memory://",
        loglevel: Annotated[str, typer.Option(help="Faust worker log level.")] = "warning",
        instance: Annotated[str | None, typer.Option(
            help="Static group member name, unique per process: a restart under it takes its "
                 "partitions back at once.")] = None,
    ) -> None:
        """Run workers for the given pools until interrupted (Ctrl-C / SIGTERM drain them)."""
        from prometheus_client import start_http_server

        from brigade.kafka.streams import faust_worker
        from workers.app import create_app
        from workers.metrics import WorkerMetrics

        settings: Settings = ctx.obj
        metrics = WorkerMetrics()
        faust_app = create_app(settings, pool, store=store, metrics=metrics, instance=instance)
        if settings.metrics_port:
            start_http_server(settings.metrics_port, addr=settings.metrics_host, registry=metrics.registry)
        faust_worker(faust_app, loglevel=loglevel).execute_from_commandline()
