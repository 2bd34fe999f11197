"""The OpenAI-compatible clients against the emulator, through real sockets."""

from __future__ import annotations

import math
import socket
import time
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brigade.errors import ModelError, Permanent, RateLimited, Transient
from brigade.settings import BuiltinModelSettings, PoolSettings
from workers.emulator import EmulatorConfig, create_emulator_app, pseudo_embedding
from workers.models import InferenceRequest, InferenceResult, ModelClient, make_client
from workers.models.builtin import BuiltinEmbeddingClient
from workers.models.openai import (
    OpenAIChatClient,
    OpenAICompletionsClient,
    OpenAIEmbeddingsClient,
    error_for_response,
    parse_retry_after,
)

from .uvicorn_server import serve

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.fixture
def emulator() -> Iterator[str]:
    config = EmulatorConfig(batch_latency_ms=0, item_latency_ms=0, api_key="sk-test")
    with serve(create_emulator_app(config)) as url:
        yield url


def configure(url: str, **changes: object) -> None:
    assert httpx.post(f"{url}/_emulator/config", json=changes).status_code == 200


def stats(url: str) -> dict[str, object]:
    return httpx.get(f"{url}/_emulator/stats").json()  # type: ignore[no-any-return]


@pytest.fixture
async def embeddings(emulator: str) -> AsyncIterator[OpenAIEmbeddingsClient]:
    pool = PoolSettings(model="emulated-minilm", endpoint=emulator, api_key="sk-test", timeout_s=0.5)
    client = make_client(pool)
    assert isinstance(client, OpenAIEmbeddingsClient)
    yield client
    await client.aclose()


def texts_batch(n: int) -> list[InferenceRequest]:
    return [
        InferenceRequest(job_id=f"job-{i}", input=f"text of job {i}", model="emulated-minilm")
        for i in range(n)
    ]


def assert_correct(batch: list[InferenceRequest], outcomes: list[InferenceResult | ModelError]) -> None:
    for request, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, InferenceResult):
            assert outcome.job_id == request.job_id
            assert outcome.output["embedding"] == pytest.approx(pseudo_embedding(request.input))


async def test_embeddings_batch_in_one_call_mapped_back_through_shuffled_indexes(
    emulator: str, embeddings: OpenAIEmbeddingsClient
) -> None:
    configure(emulator, shuffle=True, seed=1)
    batch = texts_batch(32)
    outcomes = await embeddings.infer(batch)
    assert all(isinstance(o, InferenceResult) for o in outcomes)
    assert_correct(batch, outcomes)
    assert stats(emulator)["batches"] == {"32": 1}
    assert sum(o.tokens for o in outcomes if isinstance(o, InferenceResult)) > 0


async def test_items_missing_from_a_partial_response_are_transient_never_misassigned(
    emulator: str, embeddings: OpenAIEmbeddingsClient
) -> None:
    configure(emulator, shuffle=True, drop_rate=0.4, seed=5)
    batch = texts_batch(40)
    outcomes = await embeddings.infer(batch)
    missing = [o for o in outcomes if isinstance(o, Transient)]
    assert 0 < len(missing) < 40
    assert all("omitted" in str(o) for o in missing)
    assert_correct(batch, outcomes)


async def test_non_string_input_is_a_per_item_permanent_error(embeddings: OpenAIEmbeddingsClient) -> None:
    batch = [*texts_batch(2), InferenceRequest(job_id="bad", input={"x": 1}, model="emulated-minilm")]
    outcomes = await embeddings.infer(batch)
    assert isinstance(outcomes[2], Permanent)
    assert_correct(batch, outcomes)
    assert all(isinstance(o, InferenceResult) for o in outcomes[:2])


@pytest.mark.parametrize("fmt", ["seconds", "date"])
async def test_429_raises_rate_limited_with_retry_after(
    emulator: str, embeddings: OpenAIEmbeddingsClient, fmt: str
) -> None:
    configure(emulator, rate_429=1.0, retry_after_s=7, retry_after_format=fmt)
    with pytest.raises(RateLimited) as caught:
        await embeddings.infer(texts_batch(3))
    assert caught.value.retry_after == pytest.approx(7, abs=1.5)


async def test_500_raises_transient(emulator: str, embeddings: OpenAIEmbeddingsClient) -> None:
    configure(emulator, rate_5xx=1.0)
    with pytest.raises(Transient) as caught:
        await embeddings.infer(texts_batch(3))
    assert not isinstance(caught.value, RateLimited) and "500" in str(caught.value)


async def test_hang_past_the_client_timeout_is_transient(
    emulator: str, embeddings: OpenAIEmbeddingsClient
) -> None:
    configure(emulator, rate_timeout=1.0, hang_s=10)
    started = time.monotonic()
    with pytest.raises(Transient, match="timed out"):
        await embeddings.infer(texts_batch(2))
    assert time.monotonic() - started < 3


async def test_wrong_api_key_is_permanent(emulator: str) -> None:
    client = OpenAIEmbeddingsClient(endpoint=emulator + "/v1", model="m", api_key="wrong")
    try:
        with pytest.raises(Permanent, match="401"):
            await client.infer(texts_batch(1))
    finally:
        await client.aclose()


async def test_unreachable_service_is_transient() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connection refused
        client = OpenAIEmbeddingsClient(endpoint=f"http://127.0.0.1:{port}", model="m")
        try:
            with pytest.raises(Transient, match="unreachable"):
                await client.infer(texts_batch(1))
        finally:
            await client.aclose()


async def test_chat_fans_out_with_bounded_concurrency_and_keeps_order(emulator: str) -> None:
    configure(emulator, batch_latency_ms=100, gpu_slots=16)
    pool = PoolSettings(
        model="m", endpoint=emulator, kind="openai-chat", api_key="sk-test", max_concurrency=3
    )
    client = make_client(pool)
    assert isinstance(client, OpenAIChatClient)
    batch = [
        InferenceRequest(
            job_id=f"c{i}", input={"messages": [{"role": "user", "content": f"q{i}"}]}, model="m"
        )
        for i in range(9)
    ]
    batch.append(InferenceRequest(job_id="bad", input={"messages": []}, model="m"))
    try:
        outcomes = await client.infer(batch)
    finally:
        await client.aclose()
    for i, outcome in enumerate(outcomes[:9]):
        assert isinstance(outcome, InferenceResult) and outcome.job_id == f"c{i}"
        assert outcome.output["text"] == f"echo: q{i}" and outcome.output["finish_reason"] == "stop"
        assert outcome.tokens > 0
    assert isinstance(outcomes[9], Permanent)  # the emulator answered 400 for that one only
    assert stats(emulator)["max_in_flight"] == 3


async def test_chat_per_request_failures_stay_in_their_slot(emulator: str) -> None:
    configure(emulator, rate_5xx=0.5, seed=2)
    client = OpenAIChatClient(endpoint=emulator, model="m", api_key="sk-test")
    batch = [
        InferenceRequest(
            job_id=f"c{i}", input={"messages": [{"role": "user", "content": f"q{i}"}]}, model="m"
        )
        for i in range(12)
    ]
    try:
        outcomes = await client.infer(batch)
    finally:
        await client.aclose()
    kinds = {type(o) for o in outcomes}
    assert kinds == {InferenceResult, Transient}
    for request, outcome in zip(batch, outcomes, strict=True):
        if isinstance(outcome, InferenceResult):
            assert outcome.output["text"] == f"echo: {request.input['messages'][0]['content']}"


async def test_completions(emulator: str) -> None:
    client = OpenAICompletionsClient(endpoint=emulator, model="m", api_key="sk-test")
    try:
        outcomes = await client.infer(
            [
                InferenceRequest(job_id="a", input={"prompt": "once"}, model="m"),
                InferenceRequest(job_id="b", input="upon", model="m"),
                InferenceRequest(job_id="c", input=[1], model="m"),
            ]
        )
    finally:
        await client.aclose()
    assert [o.output["text"] for o in outcomes[:2] if isinstance(o, InferenceResult)] == [
        "echo: once",
        "echo: upon",
    ]
    assert isinstance(outcomes[2], Permanent)


def test_make_client_picks_by_kind_without_loading_anything() -> None:
    pool = PoolSettings(model="all-MiniLM-L6-v2", endpoint="http://x", kind="builtin")
    builtin = make_client(pool)
    assert isinstance(builtin, BuiltinEmbeddingClient) and isinstance(builtin, ModelClient)
    assert builtin.backend == "onnx"
    # The in-process model follows the builtin_model settings, as the model server does.
    on_gpu = make_client(pool, builtin=BuiltinModelSettings(backend="torch", threads=1))
    assert isinstance(on_gpu, BuiltinEmbeddingClient) and on_gpu.backend == "torch"
    completions = make_client(PoolSettings(model="m", endpoint="http://x", kind="openai-completions"))
    assert isinstance(completions, OpenAICompletionsClient)


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": "0.25"}, 0.25),
        ({"retry-after": "-4"}, 0.0),
        ({"retry-after": format_datetime(NOW + timedelta(seconds=90), usegmt=True)}, 90.0),
        ({"retry-after": format_datetime(NOW - timedelta(seconds=90), usegmt=True)}, 0.0),
        ({"retry-after": "soon"}, None),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({}, None),
    ],
)
def test_parse_retry_after(headers: dict[str, str], expected: float | None) -> None:
    assert parse_retry_after(headers, now=NOW) == expected


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (429, RateLimited),
        (408, Transient),
        (500, Transient),
        (503, Transient),
        (400, Permanent),
        (404, Permanent),
    ],
)
def test_status_mapping(status: int, error: type[ModelError]) -> None:
    mapped = error_for_response(httpx.Response(status, json={"error": {"message": "why"}}), now=NOW)
    assert type(mapped) is error and "why" in str(mapped)


def test_duplicate_or_out_of_range_indexes_are_never_trusted() -> None:
    from workers.models.openai import _vectors_by_index

    body = {
        "data": [
            {"index": 1, "embedding": [1.0]},
            {"index": 1, "embedding": [2.0]},
            {"index": 7, "embedding": [3.0]},
            {"index": 2, "embedding": "not a vector"},
            {"index": True, "embedding": [4.0]},
            {"index": 0, "embedding": [5.0]},
        ]
    }
    vectors = _vectors_by_index(body, 3)
    assert vectors[0] == [5.0]
    assert isinstance(vectors[1], Transient) and "twice" in str(vectors[1])
    assert isinstance(vectors[2], Transient)
    with pytest.raises(Transient):
        _vectors_by_index({"data": None}, 1)


async def test_a_body_with_nan_literals_is_read_as_before() -> None:
    # orjson refuses the NaN literal some servers write; the standard parser reads it.
    text = ('{"object":"list","data":[{"object":"embedding","index":0,"embedding":[NaN,0.5]}],'
            '"model":"m","usage":{"prompt_tokens":1,"total_tokens":1}}')

    async def embeddings(request: Request) -> Response:
        return Response(text, media_type="application/json")

    async def healthz(request: Request) -> Response:
        return Response("ok")

    routes = [Route("/v1/embeddings", embeddings, methods=["POST"]), Route("/healthz", healthz)]
    with serve(Starlette(routes=routes)) as url:
        client = OpenAIEmbeddingsClient.from_pool(PoolSettings(model="m", endpoint=url))
        try:
            [outcome] = await client.infer([InferenceRequest(job_id="j", input="text", model="m")])
        finally:
            await client.aclose()
    assert isinstance(outcome, InferenceResult)
    assert math.isnan(outcome.output["embedding"][0]) and outcome.output["embedding"][1] == 0.5
