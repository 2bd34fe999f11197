"""The built-in embedding model: real all-MiniLM-L6-v2 (384 dimensions), in process.

Two interchangeable backends behind the ``Embedder`` protocol, picked by the
``builtin_model.backend`` setting:

* ``onnx`` (default): int8 weights on onnxruntime, CPU; installs in a few hundred MB and is
  the faster of the two on CPU at small batches (``workers.models.onnx_backend``).
* ``torch``: fp32 through sentence-transformers, on CUDA when present; needs the optional
  ``torch`` extra, several GB (``workers.models.torch_backend``).

Nothing is downloaded at run time. ``load_embedder`` loads one synchronously (the model
server and the benchmark); ``BuiltinEmbeddingClient`` is the ``ModelClient`` that runs one on
a dedicated thread, off the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import get_args

from brigade.errors import ConfigError, ModelError, Permanent, Transient
from brigade.settings import ModelBackend
from workers.models.types import Embedder, InferenceRequest, InferenceResult

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
BACKENDS: tuple[str, ...] = get_args(ModelBackend)


def load_embedder(
    *, backend: str = "onnx", threads: int | None = None, name: str = DEFAULT_MODEL_NAME
) -> Embedder:
    """Load all-MiniLM-L6-v2 on ``backend`` with ``threads`` intra-op threads (blocking).

    Raises ``ConfigError`` for an unknown backend, a missing extra or a model file whose hash
    differs from the pinned one.
    """
    if backend == "onnx":
        from workers.models.onnx_backend import OnnxEmbedder

        return OnnxEmbedder.load(name=name, threads=threads)
    if backend == "torch":
        from workers.models.torch_backend import TorchEmbedder

        return TorchEmbedder.load(name=name, threads=threads)
    raise ConfigError(f"builtin_model.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")


class BuiltinEmbeddingClient:
    """``ModelClient`` over the in-process model; ``encode`` runs on a single worker thread.

    The model loads on first use (or ``await client.start()``), once per client, unless an
    already loaded ``engine`` is passed in. Raises ``ConfigError`` at construction for an
    unknown backend.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL_NAME,
        backend: str = "onnx",
        threads: int | None = None,
        engine: Embedder | None = None,
    ) -> None:
        if backend not in BACKENDS:
            raise ConfigError(f"builtin_model.backend must be one of {', '.join(BACKENDS)}, got {backend!r}")
        self.model = model
        self.backend = backend
        self._threads = threads
        # One thread: the backend parallelises inside encode; two encodes at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brigade-model")
        self._engine = engine
        self._loading = asyncio.Lock()

    async def start(self) -> None:
        """Load the model now instead of on the first batch."""
        await self._load()

    async def _load(self) -> Embedder:
        async with self._loading:
            if self._engine is None:
                loop = asyncio.get_running_loop()
                self._engine = await loop.run_in_executor(
                    self._executor,
                    lambda: load_embedder(backend=self.backend, threads=self._threads, name=self.model),
                )
            return self._engine

    async def infer(self, batch: Sequence[InferenceRequest]) -> list[InferenceResult | ModelError]:
        """Embed every string input of ``batch``; non-strings get a per-item ``Permanent``.

        Raises ``Transient`` when the model itself fails on the batch.
        """
        engine = await self._load()
        positions = [i for i, r in enumerate(batch) if isinstance(r.input, str)]
        texts = [str(batch[i].input) for i in positions]
        try:
            loop = asyncio.get_running_loop()
            vectors, tokens = await loop.run_in_executor(self._executor, engine.encode, texts)
        except (RuntimeError, ValueError) as exc:
            raise Transient(f"builtin model failed: {exc}") from exc
        outcomes: list[InferenceResult | ModelError] = [
            Permanent(f"embedding input must be a JSON string, got {type(r.input).__name__}") for r in batch
        ]
        for position, vector, count in zip(positions, vectors, tokens, strict=True):
            outcomes[position] = InferenceResult(
                job_id=batch[position].job_id, output={"embedding": vector}, model=self.model, tokens=count
            )
        return outcomes

    async def aclose(self) -> None:
        """Stop the model thread (waits for a running encode to finish)."""
        await asyncio.to_thread(self._executor.shutdown, wait=True)
        self._engine = None
