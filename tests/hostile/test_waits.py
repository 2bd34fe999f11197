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
    extra = 5

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        waiter = httpx.AsyncClient(base_url=stack.url, timeout=120,
                                   headers={"Authorization": f"Bearer {stack.keys['waiter']}"})
        acme = httpx.AsyncClient(base_url=stack.url, timeout=120,
                                 headers={"Authorization": f"Bearer {stack.keys['acme']}"})
        try:
            # More waits than the cap at once: the cap's worth are held, the rest refused
            tasks = [asyncio.create_task(waiter.post("/v1/jobs?wait=30", json={"input": f"hold {i}"}))
                     for i in range(MAX_WAITS_PER_TENANT + extra)]
            for _ in range(1200):  # the refusals come back at once; the held ones in 30 s
                if sum(t.done() for t in tasks) >= extra:
                    break
                await asyncio.sleep(0.05)
            # Another tenant's wait is answered when its job finishes, while those are held
            answered = await acme.post("/v1/jobs?wait=30", json={"input": "acme waits too"})
            return list(await asyncio.gather(*tasks)), answered
        finally:
            await waiter.aclose()
            await acme.aclose()

    answers, answered = asyncio.run(scenario())
    over = [a for a in answers if a.status_code == 429]
    assert len(over) == extra, [a.status_code for a in answers]
    assert all(a.json()["error"]["code"] == "too_many_waits" for a in over)
    assert all(int(a.headers["Retry-After"]) >= 1 for a in over)
    assert sorted(a.status_code for a in answers if a.status_code != 429) == [202] * MAX_WAITS_PER_TENANT
    assert answered.status_code == 200 and answered.json()["status"] == "succeeded", answered.text
    assert answered.json()["output"]["embedding"]
    stack.normal_job_succeeds()
