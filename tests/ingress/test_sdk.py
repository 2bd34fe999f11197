"""The producer SDK (straight to Kafka), the HTTP client, tenants and their CLI."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from brigade.kafka.topology import Topology
from brigade.settings import Settings
from cli.main import app as cli_app
from ingress import cli as ingress_cli
from ingress.client import ApiRequestError, AsyncClient, Client
from ingress.commands import JobValidationError
from ingress.producer import JobConflict, JobProducer
from ingress.tenants import TenantStore, ensure_dev_tenant, hash_key
from schemas import records as r
from tests.ingress.conftest import Api
from tests.ingress.support import commands_for, read_topic


def test_producer_sdk_publishes_valid_commands_with_delivery_reports(
    settings: Settings, topics: Topology
) -> None:
    with JobProducer(settings=settings, tenant_id="svc") as producer:
        futures = producer.submit_many([{"input": f"doc {i}"} for i in range(20)])
        producer.flush()
        receipts = [f.result(timeout=10) for f in futures]
        keyed = producer.submit({"input": "a"}, idempotency_key="k").result(timeout=10)
        with pytest.raises(JobConflict):
            producer.submit({"input": "b"}, idempotency_key="k")
        with pytest.raises(JobValidationError) as invalid:
            producer.submit({"input": "x", "priority": "urgent"})
        assert invalid.value.fields[0].field == "priority"
    assert all(rc.delivery.topic == topics.commands and rc.delivery.offset >= 0 for rc in receipts)
    records = read_topic(settings, topics.commands)
    assert len(records) == 21
    [command] = commands_for(records, keyed.job_id)
    assert isinstance(command, r.SubmitJob) and command.spec.tenant_id == "svc"
    assert command.spec.idempotency_key == "k"


async def test_producer_sdk_async_and_same_ids_as_the_api(api: Api) -> None:
    with api.client() as http:
        via_http = http.post("/v1/jobs", json={"input": "same"}, headers={"Idempotency-Key": "s1"}).json()
    with JobProducer(settings=api.settings, tenant_id="acme") as producer:
        receipt = await producer.submit_async({"input": "same"}, idempotency_key="s1")
    assert receipt.job_id == via_http["jobId"]


def test_sync_client_round_trip(api: Api) -> None:
    with Client(api.url, api_key=api.keys["acme"]) as client:
        job = client.submit({"input": "client"}, idempotency_key="c1")
        assert client.get(job["jobId"])["status"] == "queued"
        assert client.cancel(job["jobId"], reason="test")["cancelRequested"] is True
        with pytest.raises(ApiRequestError) as not_yet:
            client.result(job["jobId"])
        assert not_yet.value.status == 409
        batch = client.submit_batch([{"input": "b1"}, {"input": "b2"}])
        assert batch["accepted"] == 2
        assert client.wait(job["jobId"], timeout_s=0.2)["jobId"] == job["jobId"]
    with Client(api.url, api_key="brg_wrong") as stranger, pytest.raises(ApiRequestError) as denied:
        stranger.get(job["jobId"])
    assert denied.value.status == 401 and denied.value.code == "unauthorized"


async def test_async_client_round_trip(api: Api) -> None:
    async with AsyncClient(api.url, api_key=api.keys["acme"]) as client:
        job = await client.submit({"input": "async client"})
        assert (await client.get(job["jobId"]))["status"] == "queued"
        assert (await client.events(job["jobId"])) == []
        with pytest.raises(ApiRequestError) as missing:
            await client.get("nope")
        assert missing.value.status == 404


def test_tenants_store_only_hashes_and_the_cli_manages_them(settings: Settings, tmp_path: object) -> None:
    store = TenantStore.from_settings(settings)
    tenant, key = store.add("acme", jobs_per_second=10.0)
    raw = store.path.read_text()
    assert key not in raw and hash_key(key) in raw
    assert store.authenticate(key) == tenant
    assert store.authenticate(key + "x") is None
    assert store.revoke("acme") == 1
    assert store.authenticate(key) is None

    ingress_cli.register(cli_app)
    env = {"BRIGADE_DATA_DIR": str(settings.data_dir)}
    runner = CliRunner()
    added = runner.invoke(cli_app, ["tenants", "add", "beta", "--requests-per-second", "5"], env=env)
    assert added.exit_code == 0, added.output
    new_key = added.output.strip().splitlines()[-1]
    assert TenantStore.from_settings(settings).authenticate(new_key) is not None
    listed = runner.invoke(cli_app, ["tenants", "list"], env=env)
    assert "beta" in listed.output and new_key not in listed.output
    revoked = runner.invoke(cli_app, ["tenants", "revoke", "beta"], env=env)
    assert revoked.exit_code == 0 and TenantStore.from_settings(settings).authenticate(new_key) is None


def test_ensure_dev_tenant_is_stable_and_writes_credentials(settings: Settings) -> None:
    first = ensure_dev_tenant(settings)
    again = ensure_dev_tenant(settings)
    assert first == again
    saved = json.loads(settings.path("dev-credentials.json").read_text())
    assert saved == {"url": "http://127.0.0.1:8000", "tenantId": "dev", "apiKey": first.api_key}
    tenant = TenantStore.from_settings(settings).authenticate(first.api_key)
    assert tenant is not None and tenant.allow_private_callbacks
