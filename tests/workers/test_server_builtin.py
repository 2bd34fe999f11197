"""The built-in model server and client over the real all-MiniLM-L6-v2 (default onnx backend)."""

from __future__ import annotations

import asyncio
import base64
import json
import math
import re
from array import array
from collections.abc import Iterator, Sequence

import httpx
import pytest

from brigade.errors import Permanent
from brigade.settings import PoolSettings
from workers.models import InferenceRequest, InferenceResult
from workers.models.builtin import BuiltinEmbeddingClient
from workers.models.openai import OpenAIEmbeddingsClient
from workers.models.types import Embedder
from workers.server import create_app

from .model_fixtures import GUITAR, PARAPHRASE, UNRELATED, cosine
from .uvicorn_server import serve

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def server(minilm: Embedder) -> Iterator[str]:
    with serve(create_app(loader=lambda: minilm, max_batch_size=64)) as url:
        yield url


def test_real_embeddings_are_normalised_and_semantic(server: str) -> None:
    response = httpx.post(
        f"{server}/v1/embeddings", json={"input": [GUITAR, PARAPHRASE, UNRELATED]}, timeout=30
    )
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "all-MiniLM-L6-v2"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    guitar, paraphrase, unrelated = (d["embedding"] for d in body["data"])
    assert len(guitar) == 384
    assert math.isclose(math.sqrt(math.fsum(x * x for x in guitar)), 1.0, abs_tol=1e-4)
    similar, different = cosine(guitar, paraphrase), cosine(guitar, unrelated)
    assert similar > 0.6 and different < 0.2 and similar - different > 0.5
    assert body["usage"]["prompt_tokens"] == body["usage"]["total_tokens"] > 10


def test_single_string_input_and_base64_format(server: str) -> None:
    plain = httpx.post(f"{server}/v1/embeddings", json={"input": GUITAR}, timeout=30).json()
    packed = httpx.post(
        f"{server}/v1/embeddings", json={"input": GUITAR, "encoding_format": "base64"}, timeout=30
    ).json()
    decoded = array("f")
    decoded.frombytes(base64.b64decode(packed["data"][0]["embedding"]))
    assert list(decoded) == pytest.approx(plain["data"][0]["embedding"], abs=1e-6)


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        ({"input": []}, 400, "input"),
        ({"input": [1, "a"]}, 400, "input"),
        ({"input": [[101, 102], []]}, 400, "input"),
        ({"input": [True, False]}, 400, "input"),
        ({"input": [[1.5]]}, 400, "input"),
        ({}, 400, "input"),
        ({"input": "x", "encoding_format": "int8"}, 400, "encoding_format"),
        ({"input": "x", "dimensions": 0}, 400, "dimensions"),
        ({"input": "x", "dimensions": "384"}, 400, "dimensions"),
        ({"input": "x", "dimensions": True}, 400, "dimensions"),
        ({"input": "x", "model": "gpt-4"}, 404, "model"),
    ],
)
def test_bad_input_gets_openai_error_bodies(
    server: str, body: dict[str, object], status: int, param: str
) -> None:
    response = httpx.post(f"{server}/v1/embeddings", json=body)
    assert response.status_code == status
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error" and error["message"]


def test_models_health_and_metrics(server: str) -> None:
    assert httpx.get(f"{server}/v1/models").json()["data"][0]["id"] == "all-MiniLM-L6-v2"
    assert httpx.get(f"{server}/healthz").json() == {
        "status": "ok", "model": "all-MiniLM-L6-v2", "backend": "onnx"
    }
    metrics = httpx.get(f"{server}/metrics").text
    assert "brigade_model_requests_total" in metrics and "brigade_model_inference_seconds" in metrics


async def test_concurrent_requests_are_micro_batched(server: str) -> None:
    def model_calls() -> float:
        text = httpx.get(f"{server}/metrics").text
        match = re.search(r"^brigade_model_batch_size_count (\S+)$", text, re.MULTILINE)
        assert match is not None
        return float(match.group(1))

    before = model_calls()
    async with httpx.AsyncClient(timeout=60) as client:
        responses = await asyncio.gather(
            *(
                client.post(f"{server}/v1/embeddings", json={"input": f"sentence number {i}"})
                for i in range(24)
            )
        )
        direct = (await client.post(f"{server}/v1/embeddings", json={"input": "sentence number 5"})).json()
    assert all(r.status_code == 200 for r in responses)
    # Every request got its own text's vector back, not a neighbour's.
    assert responses[5].json()["data"][0]["embedding"] == pytest.approx(
        direct["data"][0]["embedding"], abs=1e-5
    )
    assert model_calls() - before < 24


async def test_openai_client_against_the_builtin_server(server: str) -> None:
    client = OpenAIEmbeddingsClient.from_pool(PoolSettings(model="all-MiniLM-L6-v2", endpoint=server))
    try:
        outcomes = await client.infer(
            [
                InferenceRequest(job_id=str(i), input=t, model="all-MiniLM-L6-v2")
                for i, t in enumerate([GUITAR, UNRELATED])
            ]
        )
    finally:
        await client.aclose()
    assert [o.job_id for o in outcomes if isinstance(o, InferenceResult)] == ["0", "1"]


async def test_in_process_builtin_client(minilm: Embedder) -> None:
    client = BuiltinEmbeddingClient(engine=minilm)
    batch = [
        InferenceRequest(job_id="a", input=GUITAR, model="all-MiniLM-L6-v2"),
        InferenceRequest(job_id="b", input={"messages": []}, model="all-MiniLM-L6-v2"),
        InferenceRequest(job_id="c", input=PARAPHRASE, model="all-MiniLM-L6-v2"),
    ]
    try:
        a, b, c = await client.infer(batch)
    finally:
        await client.aclose()
    assert isinstance(a, InferenceResult) and isinstance(c, InferenceResult) and isinstance(b, Permanent)
    assert a.job_id == "a" and len(a.output["embedding"]) == 384 and a.tokens > 5
    assert cosine(a.output["embedding"], c.output["embedding"]) > 0.6


def test_float_embeddings_read_back_exactly_by_the_standard_json_parser(
        server: str, minilm: Embedder) -> None:
    # The body is written by orjson; Python's own json module (the reference reader here)
    # must read back exactly the doubles the model computed.
    texts = [GUITAR, UNRELATED, PARAPHRASE]
    response = httpx.post(f"{server}/v1/embeddings", json={"model": "all-MiniLM-L6-v2", "input": texts})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = json.loads(response.text)
    vectors, _ = minilm.encode(texts)
    assert [item["embedding"] for item in body["data"]] == vectors


class _NonFinite:
    """A broken model: the real one's vectors with a NaN in the second."""

    def __init__(self, model: Embedder) -> None:
        self._model = model
        self.name, self.backend, self.dimension = model.name, model.backend, model.dimension
        self.max_seq_length, self.vocab_size = model.max_seq_length, model.vocab_size

    def encode(self, texts: Sequence[str]) -> tuple[list[list[float]], list[int]]:
        vectors, tokens = self._model.encode(texts)
        if len(vectors) > 1:
            vectors[1][7] = math.nan
        return vectors, tokens

    def decode(self, token_ids: Sequence[Sequence[int]]) -> list[str]:
        return self._model.decode(token_ids)


def test_a_model_producing_nan_is_a_server_error_not_a_body(minilm: Embedder) -> None:
    with serve(create_app(loader=lambda: _NonFinite(minilm), max_batch_size=64)) as url:
        response = httpx.post(f"{url}/v1/embeddings",
                              json={"model": "all-MiniLM-L6-v2", "input": [GUITAR, UNRELATED]})
    assert response.status_code == 500
    assert response.json()["error"]["type"] == "server_error"
    assert "non-finite" in response.json()["error"]["message"]
