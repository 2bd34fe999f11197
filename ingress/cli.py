"""``brigade api`` and ``brigade tenants add|list|revoke``."""

from __future__ import annotations

import gc
import os
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table
from starlette.applications import Starlette

from brigade.settings import Settings
from ingress.tenants import TenantStore, tenants_path

_NO_PROJECTOR_ENV = "BRIGADE_API_NO_PROJECTOR"
console = Console()


def asgi_app() -> Starlette:
    """Entry point for uvicorn's factory mode (one call per worker process): settings read here."""
    from ingress.app import create_app

    # Several workers cannot share one chDB directory; the CLI says so through the environment.
    no_projector = os.environ.get(_NO_PROJECTOR_ENV) == "1"
    tune_gc()
    return create_app(Settings(), open_read_side=not no_projector)


# A 500-job batch allocates tens of thousands of short-lived containers. With the default
# threshold (700) the collector ran ~200 times a second, promoting a request's live objects
# into older generations and re-walking every object imported at start-up: a fifth of the
# API's CPU under batch load (docs/benchmarks.md). Reference counting frees these objects;
# the cycle collector is only needed for rare cycles, so it may run far less often.
GC_YOUNG_THRESHOLD = 50_000


def tune_gc() -> None:
    """Freeze the start-up heap out of the collector's sight and make young collections rarer.

    Called once per API process at its entry point (not by ``create_app``: tests embed the
    app and keep the interpreter's defaults).
    """
    gc.freeze()
    _, older, oldest = gc.get_threshold()
    gc.set_threshold(GC_YOUNG_THRESHOLD, older, oldest)


def register(app: typer.Typer) -> None:
    """Add ``api`` and ``tenants`` to the CLI."""
    tenants_app = typer.Typer(no_args_is_help=True, help="Tenants and their API keys.")
    app.add_typer(tenants_app, name="tenants")

    @app.command("api")
    def _api(
        ctx: typer.Context,
        host: Annotated[str | None, typer.Option(help="Bind address (default api.host).")] = None,
        port: Annotated[int | None, typer.Option(help="Port (default api.port).")] = None,
        workers: Annotated[int, typer.Option(min=1, help="uvicorn worker processes.")] = 1,
    ) -> None:
        """Serve the HTTP API with uvicorn."""
        import uvicorn

        from brigade.httpserver import HTTP_PROTOCOL

        settings: Settings = ctx.obj
        if workers > 1 and settings.clickhouse_url.startswith("chdb://"):
            os.environ[_NO_PROJECTOR_ENV] = "1"
            console.print(
                "[yellow]several workers over chDB: no read side (one process per chDB dir);[/yellow]"
            )
            console.print("[yellow]point clickhouse_url at a ClickHouse server for reads[/yellow]")
        uvicorn.run(
            "ingress.cli:asgi_app",
            factory=True,
            host=host or settings.api.host,
            port=port or settings.api.port,
            workers=workers,
            http=HTTP_PROTOCOL,
            log_level="warning",
            access_log=False,
            limit_concurrency=settings.api.limit_concurrency,
            backlog=settings.api.backlog,
            timeout_keep_alive=settings.api.timeout_keep_alive_s,
        )

    @tenants_app.command("add")
    def _add(
        ctx: typer.Context,
        tenant_id: str,
        requests_per_second: Annotated[float | None, typer.Option(min=0.1)] = None,
        jobs_per_second: Annotated[float | None, typer.Option(min=0.1)] = None,
        allow_private_callbacks: Annotated[bool | None, typer.Option()] = None,
    ) -> None:
        """Create a tenant (or add a key to it) and print the new key once."""
        options = {
            k: v
            for k, v in {
                "requests_per_second": requests_per_second,
                "jobs_per_second": jobs_per_second,
                "allow_private_callbacks": allow_private_callbacks,
            }.items()
            if v is not None
        }
        tenant, key = TenantStore.from_settings(ctx.obj).add(tenant_id, **options)
        console.print(f"tenant {tenant.tenant_id}: new key (shown once, stored only as a hash):")
        print(key)

    @tenants_app.command("list")
    def _list(ctx: typer.Context) -> None:
        """List tenants, their limits and key ids (never keys)."""
        table = Table(title=str(tenants_path(ctx.obj)))
        for column in ("tenant", "req/s", "jobs/s", "private callbacks", "keys (id)"):
            table.add_column(column)
        for tenant in TenantStore.from_settings(ctx.obj).list():
            keys = ", ".join(k.key_id + (" (revoked)" if k.revoked else "") for k in tenant.keys)
            table.add_row(
                tenant.tenant_id,
                f"{tenant.requests_per_second:g}",
                f"{tenant.jobs_per_second:g}",
                "yes" if tenant.allow_private_callbacks else "no",
                keys,
            )
        console.print(table)

    @tenants_app.command("secret")
    def _secret(ctx: typer.Context, tenant_id: str) -> None:
        """Print the secret this tenant's callbacks are signed with (for its receiver)."""
        from brigade.signing import tenant_callback_secret

        if TenantStore.from_settings(ctx.obj).get(tenant_id) is None:
            console.print(f"[red]no tenant {tenant_id!r}[/red]")
            raise typer.Exit(1)
        print(tenant_callback_secret(ctx.obj, tenant_id).decode())

    @tenants_app.command("revoke")
    def _revoke(
        ctx: typer.Context,
        tenant_id: str,
        key_id: Annotated[str | None, typer.Option(help="Revoke only this key (default: all).")] = None,
    ) -> None:
        """Revoke one key, or every key, of a tenant."""
        count = TenantStore.from_settings(ctx.obj).revoke(tenant_id, key_id)
        console.print(f"revoked {count} key(s) of {tenant_id}")
