"""``brigade chaos``: the command, its options and its exit code."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console


def register(app: typer.Typer) -> None:
    """Add ``chaos`` to the ``brigade`` CLI."""
    app.command("chaos")(chaos)


def chaos(
    jobs: Annotated[int, typer.Option(min=1, help="Jobs to submit.")] = 3000,
    rate: Annotated[float, typer.Option(min=0.1, help="Jobs per second (paces the faults).")] = 40.0,
    brokers: Annotated[int, typer.Option(min=1, max=5, help="Kafka nodes; 3 SIGKILLs a partition leader.")]
    = 1,
    workers: Annotated[int, typer.Option(min=2, help="Worker processes (one SIGKILLed every interval).")] = 2,
    worker_every: Annotated[float, typer.Option(help="Seconds between worker SIGKILLs.")] = 10.0,
    deadline: Annotated[float, typer.Option(help="Seconds after the last submission until judging.")] = 420.0,
    seed: Annotated[int, typer.Option(help="Seed of the workload, the faults and the model's errors.")] = 0,
    report: Annotated[Path | None, typer.Option(help="Write the ledger here as JSON.")] = None,
    keep: Annotated[Path | None, typer.Option(help="Run in this directory and keep it (logs).")] = None,
) -> None:
    """Run a fresh stack under faults and check that no job is lost or decided twice; exit 1 if any is."""
    from cli.chaos.run import RunOptions, print_report, run, write_report

    console = Console()
    options = RunOptions(jobs=jobs, rate=rate, brokers=brokers, workers=workers, deadline_s=deadline,
                         worker_every_s=worker_every, seed=seed, keep=keep)
    result = run(options, console=console)
    print_report(result, console)
    if report is not None:
        write_report(result, report)
        console.print(f"report: {report}")
    if not result["clean"]:
        raise typer.Exit(1)
