"""``brigade projector``, ``brigade query``, ``brigade replay`` and ``brigade audit``."""

from __future__ import annotations

import re
import signal
from datetime import UTC, datetime, timedelta
from types import FrameType
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from brigade.errors import ConfigError, KafkaError, ProjectionError
from brigade.settings import Settings
from processors.lifecycle import Job
from projections.backends import connect, open_clickhouse
from projections.reports import REPORTS, Report, raw_query

console = Console()
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def register(app: typer.Typer) -> None:
    """Add the projections' commands to the ``brigade`` CLI."""
    app.command("projector")(projector)
    app.command("query")(query)
    app.command("replay")(replay)
    app.command("audit")(audit)


def parse_time(text: str, *, now: datetime | None = None) -> datetime:
    """``1h``/``30m``/``2d``/``45s`` ago, or an ISO-8601 instant (UTC when naive).

    Raises:
        ConfigError: neither form.
    """
    now = now or datetime.now(UTC)
    match = _DURATION.match(text.strip())
    if match:
        return now - timedelta(**{_UNITS[match.group(2)]: float(match.group(1))})
    try:
        value = datetime.fromisoformat(text)
    except ValueError as exc:
        raise ConfigError(f"{text!r} is neither a duration (1h, 30m) nor an ISO-8601 time") from exc
    return value if value.tzinfo is not None else value.replace(tzinfo=UTC)


def projector(
    ctx: typer.Context,
    batch_size: Annotated[int, typer.Option(help="Insert after this many events...")] = 5_000,
    batch_ms: Annotated[float, typer.Option(help="...or this long after a batch's first event.")] = 100.0,
) -> None:
    """Project brigade.job-events into ClickHouse until SIGINT/SIGTERM."""
    from projections.projector import Projector

    settings: Settings = ctx.obj
    ch = connect(settings.clickhouse_url)
    runner = Projector(settings=settings, clickhouse=ch, batch_size=batch_size, batch_ms=batch_ms)

    def _stop(signum: int, frame: FrameType | None) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    console.print(f"projecting {settings.topic('job-events')} into {settings.clickhouse_url}")
    try:
        runner.run_forever()
    finally:
        ch.close()
    stats = runner.stats
    console.print(f"stopped: {stats.events} events projected, {stats.duplicates} duplicates, "
                  f"{stats.undecodable} undecodable")


def query(
    ctx: typer.Context,
    report: Annotated[str | None, typer.Argument(help=f"One of: {', '.join(REPORTS)}.")] = None,
    since: Annotated[str, typer.Option(help="Window start: 1h, 30m, 2d or ISO time.")] = "1h",
    until: Annotated[str | None, typer.Option(help="Window end (default now).")] = None,
    tenant: Annotated[str | None, typer.Option(help="Only this tenant's jobs.")] = None,
    sql: Annotated[str | None, typer.Option(help="Run this read-only SQL instead of a report.")] = None,
    fmt: Annotated[str, typer.Option("--format", help="table, json or csv.")] = "table",
) -> None:
    """Print a canned analytics report, or the result of read-only SQL."""
    settings: Settings = ctx.obj
    if fmt not in ("table", "json", "csv"):
        raise ConfigError(f"--format must be table, json or csv, not {fmt!r}")
    if sql is None and report not in REPORTS:
        raise ConfigError(f"name a report ({', '.join(REPORTS)}) or pass --sql")
    ch = open_clickhouse(settings)
    try:
        if sql is not None:
            result = raw_query(ch, sql)
        else:
            assert report is not None
            window_end = parse_time(until) if until else datetime.now(UTC)
            result = REPORTS[report](ch, since=parse_time(since), until=window_end, tenant_id=tenant)
    finally:
        ch.close()
    print_report(result, fmt)


def print_report(report: Report, fmt: str) -> None:
    """Write ``report`` to stdout as a rich table, JSON or CSV."""
    if fmt == "json":
        typer.echo(report.to_json())
    elif fmt == "csv":
        typer.echo(report.to_csv(), nl=False)
    else:
        table = Table(title=report.title)
        for column in report.columns:
            table.add_column(column)
        for row in report.rows:
            table.add_row(*(_cell(value) for value in row))
        console.print(table)


def _cell(value: object) -> str:
    if isinstance(value, list):
        return " / ".join(_cell(v) for v in value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    return "" if value is None else str(value)


def replay(
    ctx: typer.Context,
    since: Annotated[str | None, typer.Option(help="Start at this time (1h, ISO) instead of the beginning.")]
    = None,
    into: Annotated[str | None, typer.Option(help="Rebuild the projections into this database.")] = None,
    processor: Annotated[bool, typer.Option(help="Also compare with the job processor's table.")] = True,
    show: Annotated[int, typer.Option(help="Print at most this many differences.")] = 50,
) -> None:
    """Fold the event log again; verify the projections (default) or rebuild them --into a database."""
    from projections import replay as rp

    settings: Settings = ctx.obj
    start = parse_time(since) if since else None
    ch = open_clickhouse(settings, database=into)
    try:
        with _progress() as bar:
            task = bar.add_task("replaying", total=None, rate="")

            def tick(messages: int, events: int) -> None:
                elapsed = bar.tasks[task].elapsed or 1e-9
                bar.update(task, completed=messages, rate=f"{messages / elapsed:,.0f} events/s")

            if into:
                stats, seconds = rp.rebuild(settings, ch, since=start, progress=tick)
                console.print(f"rebuilt {into}: {stats.events} events, {stats.job_rows} job rows in "
                              f"{seconds:.1f}s ({stats.messages / max(seconds, 1e-9):,.0f} events/s)")
                return
            states = _processor_states(settings) if processor else None
            result = rp.verify(settings, ch, since=start, processor_states=states, progress=tick)
    finally:
        ch.close()
    _print_verify(result, show)
    if not result.ok:
        raise typer.Exit(1)


def _processor_states(settings: Settings) -> dict[str, Job] | None:
    from projections.replay import read_processor_states

    try:
        return read_processor_states(settings)
    except KafkaError as exc:
        console.print(f"[yellow]processor table not compared:[/yellow] {exc}")
        return None


def _progress() -> Progress:
    return Progress(TextColumn("{task.description}"), TextColumn("{task.completed:,} messages"),
                    TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), console=console)


def _print_verify(result: object, show: int) -> None:
    from projections.replay import VerifyReport

    assert isinstance(result, VerifyReport)
    r = result.replayed
    console.print(f"replayed {r.messages:,} messages ({r.events:,} events, {r.duplicates} duplicates, "
                  f"{r.illegal} illegal, {r.undecodable} undecodable) in {r.seconds:.2f}s "
                  f"= {r.events_per_s:,.0f} events/s; {len(r.jobs):,} jobs, {len(r.partial)} partial")
    console.print(f"compared {result.compared_jobs:,} jobs with the projection"
                  + (f" and {result.compared_processor_jobs:,} with the processor" if
                     result.compared_processor_jobs else ""))
    if result.ok:
        console.print("[green]no differences[/green]")
        return
    table = Table(title=f"{len(result.differences)} differences")
    for column in ("job", "source", "field", "replayed", "stored"):
        table.add_column(column)
    for d in result.differences[:show]:
        table.add_row(d.job_id, d.source, d.field, str(d.replayed), str(d.stored))
    console.print(table)


def audit(
    ctx: typer.Context,
    job_id: Annotated[str, typer.Argument(help="The job to show.")],
    tenant: Annotated[str | None, typer.Option(help="Only if the job belongs to this tenant.")] = None,
) -> None:
    """Print one job's timeline with the time between transitions."""
    from projections.audit import timeline

    settings: Settings = ctx.obj
    ch = open_clickhouse(settings)
    try:
        steps = timeline(ch, job_id, tenant_id=tenant)
    finally:
        ch.close()
    if not steps:
        raise ProjectionError(f"job {job_id} has no projected events")
    table = Table(title=f"job {job_id}")
    for column in ("seq", "event", "at (UTC)", "+ms", "total ms", "status", "detail"):
        table.add_column(column)
    for s in steps:
        table.add_row(str(s.sequence), s.event_type, s.occurred_at.strftime("%H:%M:%S.%f")[:-3],
                      f"{s.since_previous_ms:,.1f}", f"{s.since_start_ms:,.1f}", s.status, s.summary())
    console.print(table)
