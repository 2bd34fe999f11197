"""The ``brigade`` command: one entry point, settings read once and passed down."""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from brigade.errors import BrigadeError
from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.cluster import LocalCluster
from brigade.settings import Settings

app = typer.Typer(no_args_is_help=True, help="Brigade: event-sourced orchestration for AI inference.")
kafka_app = typer.Typer(no_args_is_help=True, help="The embedded Apache Kafka broker.")
topics_app = typer.Typer(no_args_is_help=True, help="Brigade's Kafka topology.")
app.add_typer(kafka_app, name="kafka")
app.add_typer(topics_app, name="topics")
console = Console()

# Each subsystem adds its own commands; the CLI stays a thin switchboard.
_SUBSYSTEM_CLIS = (
    "processors.cli", "projections.cli", "ingress.cli", "workers.cli", "workers.cli_models", "cli.stack",
    "cli.chaos.command",
)


@app.callback()
def _load_settings(
    ctx: typer.Context,
    config: Annotated[Path | None, typer.Option(help="A brigade.toml to read.")] = None,
) -> None:
    if config is not None:
        import os

        os.environ["BRIGADE_CONFIG"] = str(config)
    try:
        ctx.obj = Settings()
    except ValueError as exc:
        console.print(f"[red]invalid configuration:[/red] {exc}")
        raise typer.Exit(2) from exc


def local_kafka(settings: Settings, brokers: int | None = None) -> LocalCluster:
    """The embedded broker (or cluster of ``brigade kafka start --brokers N``) of ``settings``."""
    return LocalCluster.from_settings(settings, brokers=brokers)


@kafka_app.command("start")
def kafka_start(
    ctx: typer.Context,
    brokers: Annotated[int | None, typer.Option(
        min=1, max=9, help="Nodes to run (default kafka.brokers); 3 gives replication 3, min ISR 2.",
    )] = None,
) -> None:
    """Start the embedded broker(s) (resolving the jars once) and wait until they answer."""
    settings: Settings = ctx.obj
    cluster = local_kafka(settings, brokers)
    cluster.start()
    console.print(f"kafka ready on {cluster.bootstrap} (logs: {cluster.nodes[0].log_path.parent})")
    if len(cluster.nodes) != settings.kafka.brokers:
        console.print(f"set kafka.brokers = {len(cluster.nodes)} (BRIGADE_KAFKA__BROKERS) so clients "
                      "and the topics' replication follow")


@kafka_app.command("stop")
def kafka_stop(
    ctx: typer.Context,
    brokers: Annotated[int | None, typer.Option(min=1, max=9, help="Nodes (default kafka.brokers).")] = None,
) -> None:
    """Stop the embedded broker(s); no process is left behind."""
    stopped = local_kafka(ctx.obj, brokers).stop()
    console.print("kafka stopped" if stopped else "kafka was not running")


@kafka_app.command("status")
def kafka_status(
    ctx: typer.Context,
    brokers: Annotated[int | None, typer.Option(min=1, max=9, help="Nodes (default kafka.brokers).")] = None,
) -> None:
    """Say whether the embedded broker(s) run and answer; exit 1 when one does not."""
    cluster = local_kafka(ctx.obj, brokers)
    pids = cluster.pids()
    if len(pids) < len(cluster.nodes):
        console.print(f"kafka not running ({len(pids)} of {len(cluster.nodes)} nodes up)")
        raise typer.Exit(1)
    for node in cluster.nodes:
        node.wait_ready(timeout_s=5)
    console.print(f"kafka running (pid {', '.join(map(str, pids))}) on {cluster.bootstrap}")


@topics_app.command("apply")
def topics_apply(ctx: typer.Context) -> None:
    """Create missing topics; report drift and exit 1 when any topic differs."""
    settings: Settings = ctx.obj
    report = topology.apply(make_admin(settings), topology.Topology(settings).specs())
    for name in report.created:
        console.print(f"[green]created[/green] {name}")
    console.print(f"{len(report.unchanged)} topics already as declared")
    for line in report.drift:
        console.print(f"[yellow]drift[/yellow] {line}")
    if report.drift:
        raise typer.Exit(1)


def _register_subsystems() -> None:
    for module_name in _SUBSYSTEM_CLIS:
        importlib.import_module(module_name).register(app)


def main() -> None:
    """Console-script entry point."""
    _register_subsystems()
    try:
        app()
    except BrigadeError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise SystemExit(1) from exc
