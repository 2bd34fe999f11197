"""Raw model speed: all-MiniLM-L6-v2 embeddings per second in a tight loop, one process.

The reference for the batching-efficiency benchmark: what the model alone does at batch
sizes 1, 8, 32 and 64, with no HTTP, Kafka or batching policy in the way. Two columns:
``raw`` calls sentence-transformers' ``encode`` directly; ``server path`` runs
``EmbeddingModel.encode`` as the model server does (adds per-text token counting).

    .venv/bin/python -m bench.bench_model [--n 256] [--repeats 3] [--threads 2]

``raw_embeddings_per_second(batch_size, n)`` is importable so the end-to-end benchmark can
measure the reference in the same run.
"""

from __future__ import annotations

import argparse
import functools
import os
import time
from collections.abc import Callable, Sequence

from bench.report import emit
from workers.models.builtin import EmbeddingModel

BATCH_SIZES = (1, 8, 32, 64)
_WORDS = [
    "the",
    "model",
    "serves",
    "embeddings",
    "for",
    "search",
    "ranking",
    "and",
    "retrieval",
    "while",
    "the",
    "queue",
    "absorbs",
    "bursts",
    "of",
    "traffic",
    "from",
    "many",
    "tenants",
    "and",
    "the",
    "workers",
    "batch",
    "requests",
    "to",
    "keep",
    "the",
    "accelerator",
    "busy",
]


def sample_texts(n: int) -> list[str]:
    """``n`` deterministic sentences of 8 to 24 words, like short documents or queries."""
    return [
        f"Document {i}: " + " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(8 + (i * 5) % 17))
        for i in range(n)
    ]


@functools.cache
def shared_model(threads: int | None = None) -> EmbeddingModel:
    """The model, loaded once per process and ``threads`` (benchmarks only)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # a benchmark is an entry point
    return EmbeddingModel.load(threads=threads)


def _per_second(encode: Callable[[Sequence[str]], object], batch_size: int, n: int, repeats: int) -> float:
    texts = sample_texts(n)
    encode(texts[:batch_size])  # warm-up: first call pays allocation and kernel selection
    best = 0.0
    # The best of a few passes: the machine is shared, and other load only ever slows a pass.
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, n, batch_size):
            encode(texts[start : start + batch_size])
        best = max(best, n / (time.perf_counter() - started))
    return best


def raw_embeddings_per_second(
    batch_size: int, n: int, *, threads: int | None = None, repeats: int = 3
) -> float:
    """Embeddings/s of sentence-transformers ``encode`` at ``batch_size`` over ``n`` texts.

    The best of ``repeats`` passes over the same ``n`` texts, after one warm-up batch.
    """
    model = shared_model(threads)._model

    def encode(texts: Sequence[str]) -> object:
        return model.encode(
            list(texts), batch_size=len(texts), normalize_embeddings=True, show_progress_bar=False
        )

    return _per_second(encode, batch_size, n, repeats)


def server_path_embeddings_per_second(
    batch_size: int, n: int, *, threads: int | None = None, repeats: int = 3
) -> float:
    """Embeddings/s of ``EmbeddingModel.encode`` (what the model server runs per call)."""
    return _per_second(shared_model(threads).encode, batch_size, n, repeats)


def main() -> None:
    """Measure every batch size, print the table and write ``bench/results/model.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--n", type=int, default=256, help="texts per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per row (the best counts)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="torch threads")
    args = parser.parse_args()
    rows = []
    for batch_size in BATCH_SIZES:
        raw = raw_embeddings_per_second(batch_size, args.n, threads=args.threads, repeats=args.repeats)
        served = server_path_embeddings_per_second(
            batch_size, args.n, threads=args.threads, repeats=args.repeats
        )
        rows.append(
            {
                "batch_size": batch_size,
                "raw_embeddings_per_s": round(raw, 1),
                "server_path_embeddings_per_s": round(served, 1),
                "raw_ms_per_batch": round(1000 * batch_size / raw, 2),
            }
        )
    emit(
        "model",
        f"all-MiniLM-L6-v2 on CPU, {args.threads} torch threads, best of {args.repeats} x {args.n} texts",
        rows,
        extra={"model": "all-MiniLM-L6-v2", "threads": args.threads, "n": args.n, "repeats": args.repeats},
    )


if __name__ == "__main__":
    main()
