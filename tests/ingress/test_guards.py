"""Keys, tenant isolation, rate limits, body limits, validation errors and back-pressure."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from confluent_kafka import TopicPartition

from brigade.kafka.clients import make_consumer
from brigade.net import free_port
from brigade.settings import Settings
from ingress.admin import ensure_operator_token
from ingress.app import create_app
from ingress.tenants import TenantStore
from tests.ingress.conftest import Api
from tests.ingress.support import serve, wait_until


def test_missing_invalid_and_revoked_keys_are_401(api: Api, tenant_store: TenantStore) -> None:
    with httpx.Client(base_url=api.url) as http:
        assert http.post("/v1/jobs", json={"input": "x"}).status_code == 401
        bad = http.get("/v1/jobs/abc", headers={"Authorization": "Bearer brg_nope"})
        assert bad.status_code == 401 and bad.json()["error"]["code"] == "unauthorized"
        assert http.get("/healthz").status_code == 200
    tenant_store.revoke("globex")
    with api.client("globex") as http:
        # The store reloads on a changed file at most once a second.
        wait_until(lambda: http.get("/v1/jobs/abc").status_code == 401, timeout_s=5)


def test_another_tenants_job_is_404_everywhere(api: Api) -> None:
    with api.client("acme") as acme, api.client("globex") as globex:
        job = acme.post("/v1/jobs", json={"input": "secret"}).json()["jobId"]
        for path in (f"/v1/jobs/{job}", f"/v1/jobs/{job}/result", f"/v1/jobs/{job}/events"):
            answer = globex.get(path)
            assert answer.status_code == 404, path
            assert "secret" not in answer.text
        assert globex.post(f"/v1/jobs/{job}/cancel").status_code == 404
        # The same request from the other tenant is a different job.
        other = globex.post("/v1/jobs", json={"input": "secret"}).json()["jobId"]
        assert other != job
        assert acme.get(f"/v1/jobs/{job}").status_code == 200


def test_request_rate_limit_answers_429_with_retry_after(start_api: Callable[..., Api]) -> None:
    api = start_api(tenants={"slow": {"requests_per_second": 2.0, "burst_seconds": 1.0}})
    with api.client("slow") as http:
        codes = [http.get("/v1/jobs/none").status_code for _ in range(4)]
        assert codes[:2] == [404, 404] and 429 in codes[2:]
        refused = http.get("/v1/jobs/none")
        if refused.status_code == 429:
            assert int(refused.headers["Retry-After"]) >= 1
            assert refused.json()["error"]["code"] == "rate_limited"
    with api.client("acme") as other:
        assert other.get("/v1/jobs/none").status_code == 404
    metrics = httpx.get(f"{api.url}/metrics", headers=_operator(api)).text
    assert 'brigade_api_rate_limited_total{limit="requests",tenant="slow"}' in metrics


def test_jobs_rate_limit_counts_batch_items(start_api: Callable[..., Api]) -> None:
    api = start_api(tenants={"few": {"jobs_per_second": 5.0, "burst_seconds": 1.0}})
    with api.client("few") as http:
        first = http.post("/v1/jobs:batch", json={"jobs": [{"input": str(i)} for i in range(8)]})
        second = http.post("/v1/jobs", json={"input": "more"})
    assert first.status_code == 200
    assert second.status_code == 429 and int(second.headers["Retry-After"]) >= 1


def test_body_limits_and_malformed_bodies(start_api: Callable[..., Api], settings: Settings) -> None:
    settings.api.max_body_bytes = 2048
    api = start_api()
    with api.client() as http:
        big = http.post("/v1/jobs", json={"input": "y" * 4096})
        assert big.status_code == 413 and big.json()["error"]["code"] == "payload_too_large"
        chunks = (b"{" + b" " * 1024 for _ in range(4))
        streamed = http.post("/v1/jobs", content=chunks, headers={"Content-Type": "application/json"})
        assert streamed.status_code == 413
        broken = http.post("/v1/jobs", content=b'{"input": ', headers={"Content-Type": "application/json"})
        assert broken.status_code == 400 and broken.json()["error"]["code"] == "malformed_json"
        assert http.post("/v1/jobs", content=b"").status_code == 400


def _fields(response: httpx.Response) -> set[str]:
    assert response.status_code == 422, response.text
    return {f["field"] for f in response.json()["error"]["fields"]}


def test_schema_violations_name_the_field(api: Api) -> None:
    limit = api.settings.retry.max_attempts_limit
    with api.client() as http:
        assert "priority" in _fields(http.post("/v1/jobs", json={"input": "x", "priority": "urgent"}))
        assert "body" in _fields(http.post("/v1/jobs", json={"modelHint": "m"}))
        assert "maxAttempts" in _fields(http.post("/v1/jobs", json={"input": "x", "maxAttempts": limit + 1}))
        assert "deadline" in _fields(
            http.post("/v1/jobs", json={"input": "x", "deadline": "2001-01-01T00:00:00Z"})
        )
        assert "surprise" in _fields(http.post("/v1/jobs", json={"input": "x", "surprise": 1}))
        assert "wait" in _fields(http.post("/v1/jobs?wait=999", json={"input": "x"}))
        assert "input.messages" in _fields(http.post("/v1/jobs", json={"input": {"messages": []}}))


def test_callback_urls_are_checked_against_the_tenant_policy(start_api: Callable[..., Api]) -> None:
    api = start_api(tenants={"lab": {"allow_private_callbacks": True}})
    private = [
        "http://127.0.0.1:9/cb",
        "http://localhost/cb",
        "http://10.1.2.3/cb",
        "http://[::1]/cb",
        "http://169.254.169.254/latest",
        "http://db.internal/cb",
    ]
    with api.client() as http:
        for url in [*private, "ftp://example.com/cb", "https://user:pw@example.com/cb"]:
            assert "callbackUrl" in _fields(http.post("/v1/jobs", json={"input": url, "callbackUrl": url})), (
                url
            )
        ok = http.post("/v1/jobs", json={"input": "x", "callbackUrl": "https://hooks.example.com/cb"})
        assert ok.status_code == 202
    with api.client("lab") as lab:
        assert lab.post("/v1/jobs", json={"input": "x", "callbackUrl": private[0]}).status_code == 202


def _drain_as_processor(settings: Settings, group: str, topic: str) -> None:
    """Consume the commands topic to its current end in the processor's group and commit."""
    consumer = make_consumer(settings, group)
    try:
        partitions = consumer.list_topics(topic, timeout=10).topics[topic].partitions
        ends = [
            TopicPartition(topic, p, consumer.get_watermark_offsets(TopicPartition(topic, p))[1])
            for p in partitions
        ]
        consumer.commit(offsets=ends, asynchronous=False)
    finally:
        consumer.close()


def _submit(http: httpx.Client, priority: str, n: int) -> list[Any]:
    # Unique inputs: a repeated one would be answered as a duplicate, before any shedding.
    return [http.post("/v1/jobs", json={"input": uuid.uuid4().hex, "priority": priority}) for _ in range(n)]


def test_back_pressure_sheds_batch_first_then_everything(
    start_api: Callable[..., Api], settings: Settings
) -> None:
    settings.api.lag_soft_limit = 3
    settings.api.lag_hard_limit = 8
    group = f"{settings.kafka.topic_prefix}-processor"
    api = start_api(lag_group=group, lag_interval_s=0.1)
    topic = f"{settings.kafka.topic_prefix}.commands"
    with api.client() as http:
        # Given a processor that consumed everything and then stopped,
        _submit(http, "batch", 2)
        _drain_as_processor(settings, group, topic)
        # when the backlog grows past the soft limit,
        assert all(a.status_code == 202 for a in _submit(http, "interactive", 5))
        refused = wait_until(
            lambda: (a := _submit(http, "batch", 1)[0]).status_code == 503 and a, timeout_s=10
        )
        # batch work is shed with Retry-After while interactive work is still taken,
        assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["Retry-After"]) >= 1
        assert _submit(http, "interactive", 1)[0].status_code == 202
        # and past the hard limit every submission is shed.
        _submit(http, "interactive", 4)
        wait_until(lambda: _submit(http, "interactive", 1)[0].status_code == 503, timeout_s=10)
        # Once the processor catches up, work is taken again.
        _drain_as_processor(settings, group, topic)
        wait_until(lambda: _submit(http, "batch", 1)[0].status_code == 202, timeout_s=10)
    metrics = httpx.get(f"{api.url}/metrics", headers=_operator(api)).text
    assert 'brigade_api_shed_total{level="soft",priority="batch"}' in metrics


def _operator(api: Api) -> dict[str, str]:
    return {"Authorization": f"Bearer {ensure_operator_token(api.settings)}"}


def test_metrics_on_the_operator_port_and_behind_the_token(
    settings: Settings, topics: object, tenant_store: TenantStore
) -> None:
    port = free_port()
    app = create_app(settings.model_copy(update={"metrics_port": port}), tenants=tenant_store,
                     open_read_side=False, lag_group=f"{settings.kafka.topic_prefix}-processor")
    with serve(app) as url:
        assert httpx.get(f"{url}/metrics", timeout=10).status_code == 401
        operator_port = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
        assert operator_port.status_code == 200 and "brigade_api_requests_total" in operator_port.text
    with pytest.raises(httpx.ConnectError):  # closed with the app
        httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=10)
