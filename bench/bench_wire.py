"""The JSON of one embeddings call between a worker and the built-in model server.

The server writes the OpenAI embeddings body (``workers.server.orjson_response``) and the
worker's client reads it (``workers.models.openai.json_body``). This measures both ends for
the batch lane's 64 texts and for one interactive text, with the standard library's
``json`` (what both used before) and with orjson, on the same body of real-model-shaped
float32 vectors; the peer baseline is the standard library in the same run.

    .venv/bin/python -m bench.bench_wire [--repeats 50]
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import orjson

from bench.report import emit
from workers.server import embeddings_body

DIMENSION = 384  # all-MiniLM-L6-v2


def _best_ms(work: Callable[[], Any], repeats: int) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        work()
        best = min(best, time.perf_counter() - started)
    return best * 1000


def _body(texts: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    vectors = rng.standard_normal((texts, DIMENSION)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    return embeddings_body(vectors.tolist(), model="all-MiniLM-L6-v2", tokens=texts * 16)


def _row(texts: int, repeats: int) -> dict[str, Any]:
    body = _body(texts)
    text = json.dumps(body, separators=(",", ":"))
    assert json.loads(orjson.dumps(body)) == json.loads(text)  # the same JSON either way
    stdlib = (_best_ms(lambda: json.dumps(body, separators=(",", ":")), repeats),
              _best_ms(lambda: json.loads(text), repeats))
    fast = (_best_ms(lambda: orjson.dumps(body), repeats), _best_ms(lambda: orjson.loads(text), repeats))
    return {"texts": texts, "body_bytes": len(text), "json_write_ms": stdlib[0], "json_read_ms": stdlib[1],
            "orjson_write_ms": fast[0], "orjson_read_ms": fast[1],
            "ratio_json_over_orjson": sum(stdlib) / sum(fast)}


def main() -> None:
    """Time encoding and parsing one body per batch size with both libraries; print and save."""
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeats", type=int, default=50)
    args = parser.parse_args()
    rows = [_row(texts, args.repeats) for texts in (64, 1)]
    emit("wire-json", "JSON of one embeddings call: server write + worker read (best of "
         f"{args.repeats})", rows)


if __name__ == "__main__":
    main()
