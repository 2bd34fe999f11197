"""The built-in model's backends side by side: onnx (int8, onnxruntime) and torch (fp32).

Each backend runs in a fresh subprocess, one after the other, so its cold start (interpreter,
imports, model load, first embedding) and its peak RSS (the kernel's high-water mark of that
process) are its own. Inside it, ``Embedder.encode`` (what the model server runs per call)
embeds the same deterministic texts at batch sizes 1, 8, 32 and 64; a row's rate is the best
of a few passes, since other load on a shared machine only ever slows a pass. The last row
gives onnx ÷ torch for each column, and the JSON adds the cosine between the two backends'
vectors of the same texts. A backend that is not installed is reported as such.

    .venv/bin/python -m bench.bench_model [--backends onnx torch] [--n 256] [--repeats 3]
                                          [--threads 2] [--rounds 1]

``raw_embeddings_per_second(batch_size, n)`` stays importable so the end-to-end benchmark can
measure the model alone in the same run.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import json
import math
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from typing import Any

from bench.report import emit
from workers.models.builtin import BACKENDS, load_embedder
from workers.models.types import Embedder

BATCH_SIZES = (1, 8, 32, 64)
COMPARED_TEXTS = 64
_WORDS = [
    "the", "model", "serves", "embeddings", "for", "search", "ranking", "and", "retrieval", "while",
    "the", "queue", "absorbs", "bursts", "of", "traffic", "from", "many", "tenants", "and", "the",
    "workers", "batch", "requests", "to", "keep", "the", "accelerator", "busy",
]
_NEEDS = {"onnx": ("onnxruntime", "tokenizers"), "torch": ("torch", "sentence_transformers")}


def sample_texts(n: int) -> list[str]:
    """``n`` deterministic sentences of 8 to 24 words, like short documents or queries."""
    return [
        f"Document {i}: " + " ".join(_WORDS[(i * 7 + k) % len(_WORDS)] for k in range(8 + (i * 5) % 17))
        for i in range(n)
    ]


@functools.cache
def shared_model(backend: str = "onnx", threads: int | None = None) -> Embedder:
    """The model on ``backend``, loaded once per process and ``threads`` (benchmarks only)."""
    return load_embedder(backend=backend, threads=threads)


def _per_second(encode: Callable[[Sequence[str]], object], batch_size: int, n: int, repeats: int) -> float:
    texts = sample_texts(n)
    encode(texts[:batch_size])  # warm-up: first call pays allocation and kernel selection
    best = 0.0
    for _ in range(repeats):
        started = time.perf_counter()
        for start in range(0, n, batch_size):
            encode(texts[start : start + batch_size])
        best = max(best, n / (time.perf_counter() - started))
    return best


def raw_embeddings_per_second(
    batch_size: int, n: int, *, backend: str = "onnx", threads: int | None = None, repeats: int = 3
) -> float:
    """Embeddings/s of ``backend``'s ``encode`` at ``batch_size`` over ``n`` texts, in this process.

    The best of ``repeats`` passes over the same ``n`` texts, after one warm-up batch.
    """
    return _per_second(shared_model(backend, threads).encode, batch_size, n, repeats)


# ---- one backend, in its own process -------------------------------------------------------


def measure_backend(backend: str, *, spawned_at: float, n: int, repeats: int, threads: int) -> dict[str, Any]:
    """Everything one child reports: load and cold start, rates, peak RSS, vectors to compare."""
    loading = time.perf_counter()
    model = load_embedder(backend=backend, threads=threads)
    load_s = time.perf_counter() - loading
    model.encode(sample_texts(1))
    cold_start_s = time.time() - spawned_at  # wall clock: the parent stamped it before the spawn
    rates = {str(b): _per_second(model.encode, b, n, repeats) for b in BATCH_SIZES}
    vectors, _ = model.encode(sample_texts(COMPARED_TEXTS))
    return {
        "backend": backend,
        "load_s": load_s,
        "cold_start_s": cold_start_s,
        "per_s": rates,
        # ru_maxrss is in KiB on Linux: the process's peak resident set, imports included.
        "peak_rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "vectors": vectors,
    }


def installed(backend: str) -> bool:
    """Whether ``backend``'s libraries are importable here (without importing them)."""
    return all(importlib.util.find_spec(module) is not None for module in _NEEDS[backend])


def run_child(backend: str, args: argparse.Namespace) -> dict[str, Any]:
    """Measure ``backend`` in a fresh interpreter; raise ``RuntimeError`` when it fails."""
    spawned_at = time.time()
    command = [sys.executable, "-m", "bench.bench_model", "--child", backend, "--spawned-at",
               repr(spawned_at), "--n", str(args.n), "--repeats", str(args.repeats),
               "--threads", str(args.threads)]
    done = subprocess.run(command, capture_output=True, text=True, check=False, env=_child_env())
    if done.returncode != 0:
        raise RuntimeError(f"{backend} benchmark failed:\n{done.stderr[-4000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def _child_env() -> dict[str, str]:
    # A benchmark is an entry point: make sure no library reaches for a model hub.
    return {**os.environ, "HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"}


# ---- the side-by-side report ----------------------------------------------------------------


def best_of(results: list[dict[str, Any]]) -> dict[str, Any]:
    """One backend's best figures over several rounds (fastest rates and starts, highest RSS)."""
    return {
        "backend": results[0]["backend"],
        "load_s": min(r["load_s"] for r in results),
        "cold_start_s": min(r["cold_start_s"] for r in results),
        "per_s": {b: max(r["per_s"][b] for r in results) for b in results[0]["per_s"]},
        "peak_rss_mib": max(r["peak_rss_mib"] for r in results),
        "vectors": results[0]["vectors"],
    }


def table_row(result: dict[str, Any]) -> dict[str, Any]:
    """A result as a table row."""
    row: dict[str, Any] = {"backend": result["backend"]}
    # Short column names: the table has to fit a terminal. bN/s: texts/s at batch size N.
    row |= {f"b{b}/s": round(rate, 1) for b, rate in result["per_s"].items()}
    row |= {
        "cold_s": round(result["cold_start_s"], 2),
        "load_s": round(result["load_s"], 2),
        "rss_MiB": round(result["peak_rss_mib"]),
    }
    return row


def ratio_row(top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, Any]:
    """``top ÷ bottom`` for every numeric column."""
    row: dict[str, Any] = {"backend": f"{top['backend']} / {bottom['backend']}"}
    for key, value in top.items():
        if key != "backend":
            row[key] = round(value / bottom[key], 2) if bottom[key] else float("nan")
    return row


def agreement(a: Sequence[Sequence[float]], b: Sequence[Sequence[float]]) -> dict[str, float]:
    """Minimum and mean cosine between two backends' vectors of the same texts."""
    cosines = [math.fsum(x * y for x, y in zip(u, v, strict=True)) for u, v in zip(a, b, strict=True)]
    return {"min_cosine": round(min(cosines), 5), "mean_cosine": round(math.fsum(cosines) / len(cosines), 5)}


def main() -> None:
    """Measure each backend in its own process, print the table and write ``results/model.json``."""
    args = _parse_args()
    if args.child:
        print(json.dumps(measure_backend(args.child, spawned_at=args.spawned_at, n=args.n,
                                         repeats=args.repeats, threads=args.threads)))
        return
    missing = [b for b in args.backends if not installed(b)]
    present = [b for b in args.backends if b not in missing]
    rounds: dict[str, list[dict[str, Any]]] = {b: [] for b in present}
    for _ in range(args.rounds):  # alternate backends so a burst of outside load hits both
        for backend in present:
            rounds[backend].append(run_child(backend, args))
    results = {b: best_of(r) for b, r in rounds.items()}
    rows = [table_row(results[b]) for b in present]
    extra: dict[str, Any] = {"threads": args.threads, "n": args.n, "repeats": args.repeats,
                             "rounds": args.rounds, "not_installed": missing,
                             "load_average": os.getloadavg()}
    if len(rows) == 2:
        rows.append(ratio_row(rows[0], rows[1]))
        extra["agreement"] = agreement(results[present[0]]["vectors"], results[present[1]]["vectors"])
    title = (f"all-MiniLM-L6-v2 backends, {args.threads} threads, best of {args.repeats} x {args.n} texts"
             + (f"; not installed: {', '.join(missing)}" if missing else ""))
    emit("model", title, rows, extra=extra)
    if "agreement" in extra:
        print(f"{present[0]} vs {present[1]} on {COMPARED_TEXTS} texts: {extra['agreement']}")


def _parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--backends", nargs="+", choices=BACKENDS, default=list(BACKENDS))
    parser.add_argument("--n", type=int, default=256, help="texts per pass")
    parser.add_argument("--repeats", type=int, default=3, help="passes per batch size (the best counts)")
    parser.add_argument("--threads", type=int, default=min(4, os.cpu_count() or 1), help="intra-op threads")
    parser.add_argument("--rounds", type=int, default=1, help="fresh processes per backend (the best counts)")
    parser.add_argument("--child", choices=BACKENDS, help=argparse.SUPPRESS)
    parser.add_argument("--spawned-at", type=float, default=0.0, help=argparse.SUPPRESS)
    return parser.parse_args()


if __name__ == "__main__":
    main()
