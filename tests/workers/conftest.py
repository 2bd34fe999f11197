"""Fixtures of the worker tests: the built-in model (loaded once per session on the default
onnx backend) and an emulated model that holds back the inputs marked ``slow``."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from workers.emulator import EmulatorConfig, create_emulator_app
from workers.models.types import Embedder

from .gated_model import HoldingModel
from .uvicorn_server import serve


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    from workers.models.builtin import load_embedder

    return load_embedder(backend="onnx", threads=2)


@pytest.fixture
def holding() -> Iterator[tuple[HoldingModel, str]]:
    """The emulator behind a gate holding every request with ``slow`` in it until released."""
    model = HoldingModel(create_emulator_app(EmulatorConfig(batch_latency_ms=1, item_latency_ms=0.1)),
                         marker=b"slow")
    with serve(model) as url:
        yield model, url
