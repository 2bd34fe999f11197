"""payloadRef attacks: a tenant names files, URLs or another tenant's objects as its payload.

Reported on ``make run``: ``file:///etc/passwd`` was read by the worker, the API's own
``/metrics`` was fetched by the worker, ``bogus://x`` was accepted and its batch never
finished (blocking a normal job behind it), and ``file:///dev/zero`` grew the worker past
6.5 GB. Each is now a 422 at the door; commands that reach the log another way (an old
command, a hand-written record) are refused again by the worker, one job at a time.
"""

from __future__ import annotations

import hashlib
import uuid
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade.ids import event_id
from brigade.ids import job_id as derive_job_id
from brigade.kafka.clients import make_producer
from brigade.kafka.topology import Topology
from brigade.payloadrefs import payload_url, tenant_prefix
from schemas.codec import Codec
from schemas.records import JobSpec, SubmitJob
from tests.hostile.conftest import Stack

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


def _attacks(stack: Stack) -> list[str]:
    store = stack.settings.object_store_url
    other = payload_url(store, "acme", "a" * 64)
    return [
        "file:///etc/passwd",
        f"http://127.0.0.1:{stack.ports['api']}/metrics",
        "bogus://x",
        "file:///dev/zero",
        other,  # another tenant's prefix
        tenant_prefix(store, "mallory") + "../acme/" + "a" * 64 + ".json",
        tenant_prefix(store, "mallory") + "passwd",
        payload_url(store, "mallory", "b" * 64) + "?x=1",
    ]


def _field_names(response: httpx.Response) -> list[str]:
    return [f["field"] for f in response.json()["error"]["fields"]]


def test_foreign_refs_are_422_naming_the_field(stack: Stack) -> None:
    with stack.client("mallory") as client:
        for ref in _attacks(stack):
            response = client.post("/v1/jobs", json={"payloadRef": ref})
            assert response.status_code == 422, (ref, response.text)
            assert _field_names(response) == ["payloadRef"], (ref, response.text)
        batch = client.post("/v1/jobs:batch", json={"jobs": [{"payloadRef": r} for r in _attacks(stack)]})
        assert batch.status_code == 200
        assert {item["status"] for item in batch.json()["results"]} == {422}
        # A well-formed ref to an object nobody stored is refused too.
        unknown = client.post("/v1/jobs", json={"payloadRef": payload_url(stack.settings.object_store_url,
                                                                            "mallory", "c" * 64)})
        assert unknown.status_code == 422 and _field_names(unknown) == ["payloadRef"]
    stack.normal_job_succeeds()


def test_uploaded_payload_is_the_one_kind_of_ref_and_stays_with_its_tenant(stack: Stack) -> None:
    text = f"uploaded {uuid.uuid4()}"
    with stack.client("acme") as client:
        stored = client.post("/v1/payloads", json={"input": text})
        assert stored.status_code == 201, stored.text
        ref = stored.json()["payloadRef"]
        assert ref.startswith(tenant_prefix(stack.settings.object_store_url, "acme"))
        job = client.post("/v1/jobs", json={"payloadRef": ref})
        assert job.status_code == 202, job.text
    status = stack.finished(job.json()["jobId"], "acme")
    assert status["status"] == "succeeded", status
    with stack.client("mallory") as client:
        stolen = client.post("/v1/jobs", json={"payloadRef": ref})
    assert stolen.status_code == 422 and _field_names(stolen) == ["payloadRef"]


def _poison(stack: Stack, refs: list[str]) -> list[str]:
    """SubmitJob commands written straight to the log, as an old or hand-made command would be."""
    codec = Codec()
    producer = make_producer(stack.settings)
    topic = Topology(stack.settings).commands
    ids = []
    for ref in refs:
        digest = hashlib.sha256(f"{ref}:{uuid.uuid4()}".encode()).hexdigest()
        job_id = derive_job_id("mallory", None, digest)
        spec = JobSpec(job_id=job_id, tenant_id="mallory", payload_sha256=digest,
                       created_at=datetime.now(UTC), payload_ref=ref, max_attempts=1)
        command = SubmitJob(command_id=event_id(job_id, "submit-command", 0, digest), spec=spec)
        producer.produce(topic, value=codec.encode(command), key=job_id.encode())
        ids.append(job_id)
    assert producer.flush(30) == 0
    return ids


def _error_of(stack: Stack, job_id: str) -> str:
    status = stack.finished(job_id, "mallory")
    assert status["status"] == "failed", status
    return str(status.get("error", ""))


def _emulator_inputs(stack: Stack) -> list[Any]:
    emulator = f"http://127.0.0.1:{stack.ports['emulator']}"
    seen: list[Any] = httpx.get(f"{emulator}/_emulator/stats", timeout=10).json().get("seen", [])
    return seen


def test_worker_refuses_refs_that_bypassed_the_api_and_the_pool_keeps_going(stack: Stack) -> None:
    # Given poisoned commands in the log, batched with a normal job submitted right after
    poisoned = _poison(stack, _attacks(stack))
    normal = stack.normal_job_succeeds("acme", text="after the poison")
    # Then every poisoned job fails on its own, saying why, and no file or URL was read
    for job_id in poisoned:
        assert "refused" in _error_of(stack, job_id)
    assert not any("root:" in str(item) for item in _emulator_inputs(stack))
    assert normal["status"] == "succeeded"


def test_worker_reads_stored_payloads_with_a_size_cap(stack: Stack) -> None:
    # Given an object under mallory's own prefix far larger than the cap (as a bug or a
    # hand-made object could leave there)
    cap = stack.settings.max_payload_bytes
    digest = "d" * 64
    store = Path(stack.settings.object_store_url.removeprefix("file://"))
    path = store / "payloads" / "mallory" / f"{digest}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b'"' + b"z" * (cap * 8) + b'"')
    with stack.client("mallory") as client:
        ref = payload_url(stack.settings.object_store_url, "mallory", digest)
        job = client.post("/v1/jobs", json={"payloadRef": ref})
    assert job.status_code == 202, job.text
    # Then the worker fails the job permanently instead of reading it all, and goes on
    assert f"larger than the {cap}-byte cap" in _error_of(stack, job.json()["jobId"])
    stack.normal_job_succeeds()
