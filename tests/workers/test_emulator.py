"""The fault-injecting emulator, through a real socket."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Iterator

import httpx
import pytest

from workers.emulator import EmulatorConfig, create_emulator_app, pseudo_embedding

from .uvicorn_server import serve


@pytest.fixture
def emulator() -> Iterator[str]:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=0, item_latency_ms=0))) as url:
        yield url


def configure(url: str, **changes: object) -> dict[str, object]:
    response = httpx.post(f"{url}/_emulator/config", json=changes)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


def test_pseudo_embeddings_are_deterministic_unit_vectors() -> None:
    a, b = pseudo_embedding("hello"), pseudo_embedding("hello")
    assert a == b and len(a) == 384
    assert math.isclose(math.fsum(x * x for x in a), 1.0, rel_tol=1e-9)
    assert pseudo_embedding("other") != a


def test_embeddings_answer_in_openai_shape_and_count_inputs(emulator: str) -> None:
    response = httpx.post(f"{emulator}/v1/embeddings", json={"input": ["a", "b", "a"], "model": "x"})
    assert response.status_code == 200
    body = response.json()
    assert body["object"] == "list" and body["model"] == "emulated-minilm"
    assert [d["index"] for d in body["data"]] == [0, 1, 2]
    assert body["data"][1]["embedding"] == pseudo_embedding("b")
    assert body["usage"]["prompt_tokens"] > 0
    stats = httpx.get(f"{emulator}/_emulator/stats").json()
    assert stats["seen"] == {"a": 2, "b": 1} and stats["served"] == {"a": 2, "b": 1}
    assert stats["items"] == 3 and stats["batches"] == {"3": 1} and stats["status"] == {"200": 1}
    httpx.post(f"{emulator}/_emulator/reset")
    assert httpx.get(f"{emulator}/_emulator/stats").json()["requests"] == 0


def test_bad_requests_get_openai_error_bodies(emulator: str) -> None:
    response = httpx.post(f"{emulator}/v1/embeddings", json={"input": [1, 2]})
    assert response.status_code == 400
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"} and error["param"] == "input"
    assert httpx.post(f"{emulator}/v1/embeddings", content=b"{nope").status_code == 400
    assert httpx.post(f"{emulator}/v1/chat/completions", json={"messages": []}).status_code == 400


def test_config_rejects_unknown_or_out_of_range_options(emulator: str) -> None:
    for bad in ({"nope": 1}, {"rate_429": 1.5}, {"rate_429": 0.6, "rate_5xx": 0.6}, {"shuffle": "yes"}):
        response = httpx.post(f"{emulator}/_emulator/config", json=bad)
        assert response.status_code == 400, bad
    assert httpx.get(f"{emulator}/_emulator/config").json()["rate_429"] == 0.0


def test_faults_follow_configured_rates_with_seeded_rng(emulator: str) -> None:
    configure(emulator, rate_429=0.3, rate_5xx=0.3, seed=7)
    first = [httpx.post(f"{emulator}/v1/embeddings", json={"input": "x"}).status_code for _ in range(40)]
    configure(emulator, seed=7)
    again = [httpx.post(f"{emulator}/v1/embeddings", json={"input": "x"}).status_code for _ in range(40)]
    assert first == again
    assert {200, 429, 500} <= set(first)
    stats = httpx.get(f"{emulator}/_emulator/stats").json()
    assert stats["seen"]["x"] == 80 and stats["served"]["x"] == first.count(200) * 2


def test_latency_has_a_per_batch_and_per_item_cost(emulator: str) -> None:
    configure(emulator, batch_latency_ms=100, item_latency_ms=5)
    started = time.monotonic()
    httpx.post(f"{emulator}/v1/embeddings", json={"input": ["t"] * 40})
    assert time.monotonic() - started >= 0.3


def test_slow_calls_take_longer_and_still_succeed(emulator: str) -> None:
    configure(emulator, rate_slow=1.0, slow_s=0.3)
    started = time.monotonic()
    response = httpx.post(f"{emulator}/v1/embeddings", json={"input": "slow"})
    # A lower bound only: a loaded machine can make it slower, never faster.
    assert time.monotonic() - started >= 0.3
    assert response.status_code == 200
    too_many = {"rate_slow": 0.5, "rate_429": 0.6}
    assert httpx.post(f"{emulator}/_emulator/config", json=too_many).status_code == 400


async def test_concurrency_above_the_limit_is_rate_limited(emulator: str) -> None:
    configure(emulator, batch_latency_ms=300, max_concurrency=1, gpu_slots=4, retry_after_s=2)
    async with httpx.AsyncClient() as client:
        responses = await asyncio.gather(
            *(client.post(f"{emulator}/v1/embeddings", json={"input": f"t{i}"}) for i in range(4))
        )
    codes = sorted(r.status_code for r in responses)
    assert codes[0] == 200 and codes[-1] == 429
    assert next(r for r in responses if r.status_code == 429).headers["retry-after"] == "2"


def test_shuffle_and_drop_keep_indexes_truthful(emulator: str) -> None:
    configure(emulator, shuffle=True, drop_rate=0.3, seed=3)
    texts = [f"text {i}" for i in range(50)]
    data = httpx.post(f"{emulator}/v1/embeddings", json={"input": texts}).json()["data"]
    indexes = [d["index"] for d in data]
    assert indexes != sorted(indexes) and 0 < len(indexes) < 50
    assert all(d["embedding"] == pseudo_embedding(texts[d["index"]]) for d in data)


def test_chat_and_models(emulator: str) -> None:
    body = httpx.post(
        f"{emulator}/v1/chat/completions",
        json={"model": "m", "messages": [{"role": "user", "content": "hi"}]},
    ).json()
    assert body["choices"][0]["message"] == {"role": "assistant", "content": "echo: hi"}
    assert httpx.get(f"{emulator}/v1/models").json()["data"][0]["id"] == "emulated-minilm"
    assert httpx.get(f"{emulator}/wp-admin/x").status_code == 404
    metrics = httpx.get(f"{emulator}/metrics").text
    assert "brigade_model_batch_size" in metrics
    assert 'brigade_model_requests_total{route="other",status="404"} 1.0' in metrics
    assert "wp-admin" not in metrics
