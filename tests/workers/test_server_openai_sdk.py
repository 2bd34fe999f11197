"""The built-in model server as OpenAI's own Python SDK uses it, over a real socket."""

from __future__ import annotations

import base64
import math
from array import array
from collections.abc import Iterator

import httpx
import openai
import pytest

from workers.emulator import EmulatorConfig, create_emulator_app
from workers.models.types import Embedder
from workers.server import create_app

from .model_fixtures import GUITAR, PARAPHRASE, UNRELATED, cosine, token_ids
from .uvicorn_server import serve

pytestmark = pytest.mark.slow

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def server(minilm: Embedder) -> Iterator[str]:
    with serve(create_app(loader=lambda: minilm, max_batch_size=64)) as url:
        yield url


@pytest.fixture
def client(server: str) -> Iterator[openai.OpenAI]:
    # No retries: a 4xx must surface as the error the server sent, on the first call.
    with openai.OpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0, timeout=60) as sdk:
        yield sdk


def floats(server: str, texts: list[str]) -> list[list[float]]:
    body = {"input": texts, "encoding_format": "float"}
    response = httpx.post(f"{server}/v1/embeddings", json=body, timeout=60)
    return [d["embedding"] for d in response.json()["data"]]


def test_default_call_asks_for_base64_and_gets_the_float_vectors(client: openai.OpenAI, server: str) -> None:
    # The SDK sends encoding_format=base64 unless told otherwise, and decodes the answer itself.
    response = client.embeddings.create(model=MODEL, input=[GUITAR, PARAPHRASE, UNRELATED])
    assert response.model == MODEL and [d.index for d in response.data] == [0, 1, 2]
    vectors = [d.embedding for d in response.data]
    assert all(len(v) == 384 for v in vectors)
    expected = floats(server, [GUITAR, PARAPHRASE, UNRELATED])
    for got, want in zip(vectors, expected, strict=True):
        assert got == pytest.approx(want, abs=1e-6)
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    assert response.usage.prompt_tokens == response.usage.total_tokens > 10


def test_explicit_base64_is_little_endian_float32(client: openai.OpenAI, server: str) -> None:
    response = client.embeddings.create(model=MODEL, input=GUITAR, encoding_format="base64")
    packed = response.data[0].embedding
    assert isinstance(packed, str)
    raw = base64.b64decode(packed)
    assert len(raw) == 384 * 4
    decoded = array("f")
    decoded.frombytes(raw)
    assert list(decoded) == pytest.approx(floats(server, [GUITAR])[0], abs=1e-6)


def test_float_format_and_the_native_dimension_are_served(client: openai.OpenAI) -> None:
    response = client.embeddings.create(model=MODEL, input=GUITAR, encoding_format="float", dimensions=384)
    vector = response.data[0].embedding
    assert len(vector) == 384 and math.isclose(math.hypot(*vector), 1.0, abs_tol=1e-4)


def test_dimensions_the_model_cannot_honour_is_a_400_naming_the_parameter(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=GUITAR, dimensions=256)
    error = caught.value
    assert error.status_code == 400
    assert (error.code, error.param) == ("unsupported_dimensions", "dimensions")
    assert "384" in error.message


def test_a_token_array_embeds_like_its_text(client: openai.OpenAI, server: str) -> None:
    response = client.embeddings.create(model=MODEL, input=token_ids(GUITAR))
    (want,) = floats(server, [GUITAR])
    assert cosine(response.data[0].embedding, want) > 0.9999
    assert response.usage.prompt_tokens == len(token_ids(GUITAR))


def test_a_list_of_token_arrays_embeds_each_in_order(client: openai.OpenAI, server: str) -> None:
    texts = [GUITAR, UNRELATED]
    response = client.embeddings.create(model=MODEL, input=[token_ids(t) for t in texts])
    for got, want in zip((d.embedding for d in response.data), floats(server, texts), strict=True):
        assert cosine(got, want) > 0.9999


def test_token_ids_outside_the_vocabulary_are_a_clear_400(client: openai.OpenAI) -> None:
    # 100256 is a typical id of another tokenizer (OpenAI's cl100k); MiniLM knows 30522 ids.
    with pytest.raises(openai.BadRequestError) as caught:
        client.embeddings.create(model=MODEL, input=[[101, 2000, 102], [101, 100256, 102]])
    error = caught.value
    assert (error.code, error.param) == ("invalid_token_id", "input")
    assert "input[1][1] = 100256" in error.message and "0..30521" in error.message


def test_an_unknown_model_is_a_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.embeddings.create(model="text-embedding-3-small", input=GUITAR)
    assert caught.value.code == "model_not_found"


def test_async_client_works_too(server: str) -> None:
    import asyncio

    async def call() -> list[float]:
        async with openai.AsyncOpenAI(base_url=f"{server}/v1", api_key="unused", max_retries=0) as sdk:
            response = await sdk.embeddings.create(model=MODEL, input=GUITAR)
            return response.data[0].embedding

    assert asyncio.run(call()) == pytest.approx(floats(server, [GUITAR])[0], abs=1e-6)


def test_the_emulator_refuses_token_arrays_rather_than_faking_them() -> None:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=0, item_latency_ms=0))) as url:
        response = httpx.post(f"{url}/v1/embeddings", json={"input": [101, 2000, 102]})
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "unsupported_input"
