"""The embedded projector under failing inserts: it retries forever, reports why and how far
behind it is, and an operator's USE/SET cannot move its connection."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest

from brigade.endpoints import ADMIN_CLICKHOUSE_PATH, operator_token_path
from schemas import records as r
from tests.ingress.conftest import Api
from tests.ingress.support import HAVE_CLICKHOUSE_READ_MODEL, wait_until

pytestmark = pytest.mark.skipif(not HAVE_CLICKHOUSE_READ_MODEL, reason="needs the projections' chDB")


def _post_operator(api: Api, sql: str) -> httpx.Response:
    token = operator_token_path(api.settings).read_text().strip()
    return httpx.post(f"{api.url}{ADMIN_CLICKHOUSE_PATH}", json={"sql": sql, "format": "Null"},
                      headers={"Authorization": f"Bearer {token}"}, timeout=30)


def _operator(api: Api, sql: str) -> None:
    response = _post_operator(api, sql)
    assert response.status_code == 204, response.text


def _ready(api: Api) -> tuple[int, dict[str, Any]]:
    response = httpx.get(f"{api.url}/readyz", timeout=30)
    checks: dict[str, Any] = response.json()["checks"]
    return response.status_code, checks


def _metric(api: Api, name: str) -> float:
    token = operator_token_path(api.settings).read_text().strip()
    response = httpx.get(f"{api.url}/metrics", headers={"Authorization": f"Bearer {token}"}, timeout=30)
    assert response.status_code == 200, response.text
    for line in response.text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


@pytest.mark.chaos
def test_projector_retries_past_failed_inserts_and_reports_them(api: Api) -> None:
    status, checks = wait_until(lambda: (s := _ready(api)) and s[1].get("projector") == "ok" and s,
                                timeout_s=60)
    assert status == 200
    # Given an operator who switched their session's database (settings are refused outright:
    # the operator's connection is read-only)
    _operator(api, "USE system")
    refused = _post_operator(api, "SET max_threads = 1")
    assert refused.status_code == 400 and "readonly" in refused.text.lower(), refused.text
    # And the projector's table gone for a while, so every insert fails
    api.as_owner("RENAME TABLE brigade.job_events TO brigade.job_events_away")
    spec = r.JobSpec(job_id=str(uuid.uuid4()), tenant_id="acme", payload_sha256="x",
                     created_at=datetime.now(UTC), input='"hi"')
    api.processor.submitted(spec)
    api.processor.queued(spec)
    # When more inserts fail than the projector used to tolerate (five retries)
    wait_until(lambda: _metric(api, "brigade_projector_insert_failures") >= 7, timeout_s=120)
    # Then it is still running, says why and how far behind it is, and the API stays ready
    status, checks = _ready(api)
    assert status == 200
    assert checks["projector"].startswith("retrying:") and "job_events" in checks["projector_last_error"]
    assert int(checks["projector_lag"]) >= 2
    assert _metric(api, "brigade_projector_up") == 1 and _metric(api, "brigade_projector_retrying") == 1
    # And once the table is back, the same batch goes in, on the projector's own database
    api.as_owner("RENAME TABLE brigade.job_events_away TO brigade.job_events")
    wait_until(lambda: _ready(api)[1].get("projector") == "ok" and _ready(api)[1]["projector_lag"] == "0",
               timeout_s=120)
    with api.client("acme") as client:
        found = wait_until(lambda: client.get(f"/v1/jobs/{spec.job_id}").status_code == 200, timeout_s=60)
        assert found and client.get(f"/v1/jobs/{spec.job_id}").json()["status"] == "queued"
