"""``brigade model-server``: the built-in model server, or the fault-injecting emulator."""

from __future__ import annotations

import os
from typing import Annotated

import typer
from pydantic import ValidationError

from brigade.errors import ConfigError
from brigade.settings import BuiltinModelSettings, ModelBackend, Settings
from workers.emulator import EmulatorConfig

_EMU = "Emulator (TEST/BENCHMARK ONLY)"


def register(app: typer.Typer) -> None:
    """Add ``model-server`` to the ``brigade`` command."""
    app.command("model-server")(model_server)


def model_server(
    ctx: typer.Context,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to listen on.")] = 8100,
    backend: Annotated[
        ModelBackend | None,
        typer.Option(help="onnx (CPU, default install) or torch (GPU; make deps MODEL=torch). "
                     "Default: builtin_model.backend."),
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Intra-op threads of the model. Default: builtin_model.threads.")
    ] = None,
    max_batch_size: Annotated[
        int | None, typer.Option(help="Most texts per model call. Default: builtin_model.max_batch_size.")
    ] = None,
    emulate: Annotated[
        bool,
        typer.Option(help="Serve the fault-injecting EMULATOR (fake vectors) instead of the real model."),
    ] = False,
    batch_latency_ms: Annotated[float, typer.Option(help="Cost per call.", rich_help_panel=_EMU)] = 20.0,
    item_latency_ms: Annotated[float, typer.Option(help="Cost per item.", rich_help_panel=_EMU)] = 0.5,
    gpu_slots: Annotated[int, typer.Option(help="Calls computing at once.", rich_help_panel=_EMU)] = 1,
    max_concurrency: Annotated[
        int, typer.Option(help="429 above this many in-flight requests (0: no limit).", rich_help_panel=_EMU)
    ] = 0,
    rate_429: Annotated[float, typer.Option(help="Fraction answered 429.", rich_help_panel=_EMU)] = 0.0,
    retry_after_s: Annotated[float, typer.Option(help="Retry-After of a 429.", rich_help_panel=_EMU)] = 1.0,
    rate_5xx: Annotated[float, typer.Option(help="Fraction answered 500.", rich_help_panel=_EMU)] = 0.0,
    rate_timeout: Annotated[float, typer.Option(help="Fraction that hang.", rich_help_panel=_EMU)] = 0.0,
    hang_s: Annotated[float, typer.Option(help="How long a hang lasts.", rich_help_panel=_EMU)] = 30.0,
    rate_slow: Annotated[float, typer.Option(help="Fraction made slower.", rich_help_panel=_EMU)] = 0.0,
    slow_s: Annotated[float, typer.Option(help="Extra time of a slow call.", rich_help_panel=_EMU)] = 2.0,
    drop_rate: Annotated[float, typer.Option(help="Fraction of items left out.", rich_help_panel=_EMU)] = 0.0,
    shuffle: Annotated[bool, typer.Option(help="Shuffle embedding order.", rich_help_panel=_EMU)] = False,
    seed: Annotated[int, typer.Option(help="Fault RNG seed.", rich_help_panel=_EMU)] = 0,
    model: Annotated[
        str, typer.Option(help="Model name reported.", rich_help_panel=_EMU)
    ] = "emulated-minilm",
) -> None:
    """Serve OpenAI-compatible embeddings from real all-MiniLM-L6-v2 (or, with --emulate, a fake).

    The emulator is a TEST/BENCHMARK tool: hash-derived vectors, modelled latency and injected
    faults, controllable at run time through /_emulator/config.
    """
    import uvicorn

    from brigade.httpserver import HTTP_PROTOCOL  # Brigade's protocol: clients offering h2c are served

    if emulate:
        from workers.emulator import create_emulator_app

        config = EmulatorConfig(
            model=model,
            batch_latency_ms=batch_latency_ms,
            item_latency_ms=item_latency_ms,
            gpu_slots=gpu_slots,
            max_concurrency=max_concurrency,
            rate_429=rate_429,
            retry_after_s=retry_after_s,
            rate_5xx=rate_5xx,
            rate_timeout=rate_timeout,
            hang_s=hang_s,
            rate_slow=rate_slow,
            slow_s=slow_s,
            drop_rate=drop_rate,
            shuffle=shuffle,
            seed=seed,
        )
        app = create_emulator_app(config)
    else:
        # The entry point may touch the environment: make sure no library reaches the Hub.
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        from workers.server import builtin_app

        chosen = _builtin_settings(ctx.obj, backend=backend, threads=threads, max_batch_size=max_batch_size)
        app = builtin_app(
            backend=chosen.backend, threads=chosen.threads, max_batch_size=chosen.max_batch_size
        )
    uvicorn.run(app, host=host, port=port, log_level="info", timeout_graceful_shutdown=5, http=HTTP_PROTOCOL)


def _builtin_settings(
    settings: Settings | None,
    *,
    backend: ModelBackend | None,
    threads: int | None,
    max_batch_size: int | None,
) -> BuiltinModelSettings:
    """``builtin_model`` settings with the command line's options on top; ``ConfigError`` if invalid."""
    base = settings.builtin_model if settings is not None else BuiltinModelSettings()
    given = {"backend": backend, "threads": threads, "max_batch_size": max_batch_size}
    merged = base.model_dump() | {k: v for k, v in given.items() if v is not None}
    if merged["threads"] is None:
        # The model server is its own process: a few threads, not every core, by default.
        merged["threads"] = max(1, min(4, os.cpu_count() or 1))
    try:
        return BuiltinModelSettings.model_validate(merged)
    except ValidationError as exc:
        raise ConfigError(f"model-server options: {exc}") from exc
