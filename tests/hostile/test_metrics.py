"""Metrics: an anonymous caller (or a tenant) learns no tenant ids from ``/metrics``."""

from __future__ import annotations

import httpx
import pytest

from tests.hostile.conftest import Stack

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


def test_metrics_need_the_operator_token(stack: Stack) -> None:
    stack.normal_job_succeeds("acme")
    anonymous = httpx.get(f"{stack.url}/metrics", timeout=30)
    assert anonymous.status_code == 401
    assert "acme" not in anonymous.text and "mallory" not in anonymous.text
    with stack.client("mallory") as client:
        as_tenant = client.get("/metrics")
    assert as_tenant.status_code == 401 and "acme" not in as_tenant.text
    operator = httpx.get(f"{stack.url}/metrics", headers={"Authorization": f"Bearer {stack.operator_token}"},
                         timeout=30)
    assert operator.status_code == 200
    assert 'tenant="acme"' in operator.text
    top = stack.cli("top", "--iterations", "1", "--interval", "0")
    assert top.returncode == 0 and "brigade_api_jobs_accepted_total" in top.stdout, top.stdout + top.stderr
