"""A result's JSON text: embeddings at float32 precision, the rest as the standard library writes it."""

from __future__ import annotations

import json
import math
import random
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from brigade.ids import canonical_json
from workers.results import result_text


def unit_vector(dimensions: int, seed: int) -> list[float]:
    rng = random.Random(seed)
    vector = [rng.gauss(0, 1) for _ in range(dimensions)]
    norm = math.sqrt(sum(x * x for x in vector))
    return [x / norm for x in vector]


def test_an_embedding_reads_back_as_the_same_float32_values_in_less_text() -> None:
    vector = unit_vector(384, seed=7)
    output = {"model": "m", "embedding": vector, "usage": {"total_tokens": 3, "prompt_tokens": 3}}
    text = result_text(output)
    back = json.loads(text)
    # Every value is the float32 the model's vector holds, the other keys are untouched
    assert np.array_equal(np.asarray(back["embedding"], dtype=np.float32),
                          np.asarray(vector, dtype=np.float32))
    assert {k: v for k, v in back.items() if k != "embedding"} == {"model": "m", "usage": output["usage"]}
    # written as canonical JSON is: sorted keys, no whitespace
    assert text.startswith('{"embedding":[') and ", " not in text
    assert text.index('"model"') < text.index('"usage"')
    assert len(text) < 0.65 * len(canonical_json(output))


@pytest.mark.parametrize("output", [
    {"text": "é, no vector"},
    {"embedding": []},
    {"embedding": [1, 2, 3]},  # integers stay integers
    {"embedding": [True, False]},
    {"embedding": ["x", 0.5]},
    {"embedding": [[0.5, 0.25]]},  # not one-dimensional
    {"embedding": [[0.5], [0.25, 1.0]]},  # ragged
    {"embedding": [float("nan"), 0.5]},
    {"embedding": [1e39]},  # beyond float32
    {"embedding": [0.5], "tokens": 2**70},  # beyond orjson's integers
    {"embedding": [0.5], "nested": {1: "a non-string key"}},
    {"embedding": [0.5], "score": float("inf")},
])
def test_what_float32_or_orjson_cannot_carry_exactly_is_written_as_before(output: dict[Any, Any]) -> None:
    assert result_text(output) == canonical_json(output)


json_scalars = st.one_of(st.none(), st.booleans(), st.integers(-(2**63), 2**63 - 1),
                         st.floats(allow_nan=False, allow_infinity=False), st.text(max_size=8))
json_values = st.recursive(json_scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=5), inner, max_size=3)), max_leaves=8)


@given(vector=st.lists(st.floats(-1e30, 1e30, allow_nan=False), min_size=1, max_size=16),
       rest=st.dictionaries(st.text(max_size=6).filter(lambda k: k != "embedding"), json_values, max_size=4))
def test_any_output_reads_back_equal_with_its_vector_at_float32(
    vector: list[float], rest: dict[str, Any]
) -> None:
    output = {**rest, "embedding": vector}
    back = json.loads(result_text(output))
    expected = json.loads(canonical_json(output))
    assert np.array_equal(np.asarray(back.pop("embedding"), dtype=np.float32),
                          np.asarray(expected.pop("embedding"), dtype=np.float32))
    assert back == expected
