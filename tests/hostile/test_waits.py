"""Waits: one tenant holding many ``?wait=`` requests neither starves nor blocks another.

Tenant ``waiter``'s jobs never finish during the test (its pool's model takes ten
minutes), so each of its waits lasts as long as it asked for.
"""

from __future__ import annotations

import asyncio

import httpx
import pytest

from tests.hostile.conftest import MAX_WAITS_PER_TENANT, Stack

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


def test_waits_are_capped_per_tenant_and_others_are_answered(stack: Stack) -> None:
    stack.add_tenant("waiter")

    async def scenario() -> tuple[list[int], httpx.Response, httpx.Response]:
        waiter = httpx.AsyncClient(base_url=stack.url, timeout=120,
                                   headers={"Authorization": f"Bearer {stack.keys['waiter']}"})
        acme = httpx.AsyncClient(base_url=stack.url, timeout=120,
                                 headers={"Authorization": f"Bearer {stack.keys['acme']}"})
        try:
            held = [asyncio.create_task(waiter.post("/v1/jobs?wait=25", json={"input": f"hold {i}"}))
                    for i in range(MAX_WAITS_PER_TENANT)]
            over = await _refused_once_all_held(waiter)
            # Another tenant's wait is answered when its job finishes, while those are held
            answered = await acme.post("/v1/jobs?wait=60", json={"input": "acme waits too"})
            codes = [r.status_code for r in await asyncio.gather(*held)]
            return codes, over, answered
        finally:
            await waiter.aclose()
            await acme.aclose()

    codes, over, answered = asyncio.run(scenario())
    assert over.status_code == 429 and int(over.headers["Retry-After"]) >= 1
    assert over.json()["error"]["code"] == "too_many_waits"
    assert answered.status_code == 200 and answered.json()["status"] == "succeeded", answered.text
    assert answered.json()["output"]["embedding"]
    assert set(codes) == {202}, codes  # the held waits ended with the job still queued
    stack.normal_job_succeeds()


async def _refused_once_all_held(client: httpx.AsyncClient) -> httpx.Response:
    """Submit with wait until the cap answers 429 (the held waits reach the API in their own time)."""
    for attempt in range(600):
        response = await client.post("/v1/jobs?wait=1", json={"input": f"one more {attempt}"})
        if response.status_code == 429:
            return response
        await asyncio.sleep(0.05)
    raise AssertionError("the wait cap never answered 429")

