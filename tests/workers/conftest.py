"""The built-in model, loaded once per test session on the default (onnx) backend."""

from __future__ import annotations

import pytest

from workers.models.types import Embedder


@pytest.fixture(scope="session")
def minilm() -> Embedder:
    from workers.models.builtin import load_embedder

    return load_embedder(backend="onnx", threads=2)
