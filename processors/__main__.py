"""``python -m processors``: the same worker as ``brigade processors``, settings from the environment."""

from __future__ import annotations

from typing import Annotated

import typer

from brigade.settings import Settings
from processors.cli import run


def main(
    node: Annotated[str, typer.Option()] = "",
    store: Annotated[str, typer.Option()] = "",
    metrics_port: Annotated[int, typer.Option()] = 0,
    loglevel: Annotated[str, typer.Option()] = "info",
    delay_tiers: Annotated[bool, typer.Option()] = True,
    instance: Annotated[str | None, typer.Option()] = None,
) -> None:
    """Read settings once (``BRIGADE_*``, ``brigade.toml``) and run the worker."""
    run(Settings(), node=node, store=store, metrics_port=metrics_port, loglevel=loglevel,
        delay_tiers=delay_tiers, instance=instance)


if __name__ == "__main__":
    typer.run(main)
