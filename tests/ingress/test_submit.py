"""Submitting jobs through a real uvicorn socket into the real broker."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import httpx

from ingress.commands import payload_url
from schemas import records as r
from tests.ingress.conftest import Api
from tests.ingress.support import commands_for, read_topic


def _commands(api: Api, job_id: str) -> list[r.SubmitJob]:
    return commands_for(read_topic(api.settings, f"{api.settings.kafka.topic_prefix}.commands"), job_id)


def test_submit_answers_202_after_the_command_is_in_kafka(api: Api) -> None:
    with api.client() as http:
        response = http.post("/v1/jobs", json={"input": "hello", "priority": "interactive"})
        assert response.status_code == 202, response.text
        body = response.json()
        assert body["status"] == "queued"
        assert body["statusUrl"].endswith(f"/v1/jobs/{body['jobId']}")
        # Read-your-writes: the projection may not have it yet, the API still knows it.
        status = http.get(f"/v1/jobs/{body['jobId']}")
    assert status.status_code == 200
    assert status.json()["status"] == "queued"
    [command] = _commands(api, body["jobId"])
    assert command.spec.tenant_id == "acme"
    assert json.loads(command.spec.input or "") == "hello"
    assert command.spec.priority == "interactive"
    assert command.spec.max_attempts == api.settings.retry.default_max_attempts


def test_chat_input_is_carried_as_json_text(api: Api) -> None:
    chat = {"messages": [{"role": "user", "content": "hi"}], "temperature": 0.2}
    with api.client() as http:
        body = http.post("/v1/jobs", json={"input": chat, "modelHint": "chat"}).json()
    [command] = _commands(api, body["jobId"])
    assert json.loads(command.spec.input or "") == chat
    assert command.spec.model_hint == "chat"


def test_same_key_same_payload_is_one_job_and_different_payload_conflicts(api: Api) -> None:
    job = {"input": "once", "metadata": {"a": "1"}}
    with api.client() as http:
        first = http.post("/v1/jobs", json=job, headers={"Idempotency-Key": "k1"})
        again = http.post("/v1/jobs", json=job, headers={"Idempotency-Key": "k1"})
        in_body = http.post("/v1/jobs", json={**job, "idempotencyKey": "k1"})
        changed = http.post("/v1/jobs", json={**job, "input": "twice"}, headers={"Idempotency-Key": "k1"})
    assert first.status_code == 202
    assert again.status_code == 200 and again.json()["duplicate"] is True
    assert again.json()["jobId"] == first.json()["jobId"] == in_body.json()["jobId"]
    assert changed.status_code == 409
    assert changed.json()["error"]["code"] == "idempotency_conflict"
    assert len(_commands(api, first.json()["jobId"])) == 1


def test_without_a_key_the_payload_is_the_key(api: Api) -> None:
    with api.client() as http:
        a = http.post("/v1/jobs", json={"input": "same"}).json()
        b = http.post("/v1/jobs", json={"input": "same"}).json()
        c = http.post("/v1/jobs", json={"input": "same", "priority": "interactive"}).json()
    assert a["jobId"] == b["jobId"] != c["jobId"]


async def test_fifty_concurrent_identical_submissions_make_one_job(api: Api) -> None:
    headers = {"Authorization": f"Bearer {api.keys['acme']}", "Idempotency-Key": "burst"}
    async with httpx.AsyncClient(base_url=api.url, headers=headers, timeout=30) as http:
        answers = await asyncio.gather(*(http.post("/v1/jobs", json={"input": "x"}) for _ in range(50)))
    codes = sorted(a.status_code for a in answers)
    assert codes.count(202) == 1 and codes.count(200) == 49
    assert len({a.json()["jobId"] for a in answers}) == 1
    assert len(_commands(api, answers[0].json()["jobId"])) == 1


def test_oversize_input_goes_to_the_object_store(start_api: Callable[..., Api]) -> None:
    api = start_api()
    big = "z" * (api.settings.inline_threshold_bytes + 10)
    with api.client() as http:
        body = http.post("/v1/jobs", json={"input": big}).json()
    [command] = _commands(api, body["jobId"])
    spec = command.spec
    assert spec.input is None
    assert spec.payload_ref == payload_url(api.settings, "acme", spec.payload_sha256)
    assert spec.payload_size == len(json.dumps(big))
    stored = Path(spec.payload_ref.removeprefix("file://")).read_text()
    assert json.loads(stored) == big


def test_batch_answers_per_item(api: Api) -> None:
    jobs = [{"input": "a"}, {"priority": "urgent"}, {"input": "b", "priority": "interactive"}, {"input": "a"}]
    with api.client() as http:
        response = http.post("/v1/jobs:batch", json={"jobs": jobs})
    assert response.status_code == 200, response.text
    body = response.json()
    assert [item["status"] for item in body["results"]] == [202, 422, 202, 200]
    assert body["accepted"] == 3 and body["rejected"] == 1
    fields = {f["field"] for f in body["results"][1]["error"]["fields"]}
    assert any(name.startswith("jobs.1") for name in fields)
    assert body["results"][3]["jobId"] == body["results"][0]["jobId"]
    assert _commands(api, body["results"][2]["jobId"])


def test_batch_key_makes_a_retried_batch_idempotent(api: Api) -> None:
    jobs = [{"input": "p"}, {"input": "q"}]
    with api.client() as http:
        first = http.post("/v1/jobs:batch", json={"jobs": jobs}, headers={"Idempotency-Key": "B1"}).json()
        again = http.post("/v1/jobs:batch", json={"jobs": jobs}, headers={"Idempotency-Key": "B1"}).json()
    assert [i["jobId"] for i in first["results"]] == [i["jobId"] for i in again["results"]]
    assert [i["status"] for i in again["results"]] == [200, 200]
