"""Idempotency across API processes: a key reused with another payload is a 409 at once.

The second API process holds no read side (the first holds the chDB directory) and has
never seen the first submission, so before the durable claim it answered 202 and only the
job processor's JobRejected noticed.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Iterator

import httpx
import pytest

from brigade.net import free_port
from testkit.support import poll_until
from tests.hostile.conftest import Stack, env

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


@pytest.fixture
def second_api(stack: Stack) -> Iterator[str]:
    """Another ``brigade api`` process on the same stack (no read side: chDB is taken)."""
    port = free_port()
    log = (stack.home / f"api-{port}.log").open("ab")
    process = subprocess.Popen(
        [sys.executable, "-m", "cli", "api", "--port", str(port)], cwd=stack.home,
        env={**env(), "BRIGADE_API_NO_PROJECTOR": "1"}, stdout=log, stderr=subprocess.STDOUT,
        start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        poll_until(lambda: _ready(url), timeout_s=120, what="the second API process")
        yield url
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        log.close()


def _ready(url: str) -> bool:
    try:
        return httpx.get(f"{url}/readyz", timeout=2).status_code == 200
    except httpx.HTTPError:
        return False


def test_key_reused_with_another_payload_is_409_on_another_process(stack: Stack, second_api: str) -> None:
    key = f"order-{uuid.uuid4()}"
    headers = {"Authorization": f"Bearer {stack.keys['mallory']}", "Idempotency-Key": key}
    with httpx.Client(timeout=60, headers=headers) as client:
        first = client.post(f"{stack.url}/v1/jobs", json={"input": "pay 10"})
        assert first.status_code == 202, first.text
        # Immediately, on the other process: another payload under the key is refused
        changed = client.post(f"{second_api}/v1/jobs", json={"input": "pay 10000"})
        assert changed.status_code == 409, changed.text
        assert changed.json()["error"]["code"] == "idempotency_conflict"
        # and the same payload is the same job
        again = client.post(f"{second_api}/v1/jobs", json={"input": "pay 10"})
        assert again.status_code == 200 and again.json()["duplicate"] is True, again.text
        assert again.json()["jobId"] == first.json()["jobId"]
        # A batch item under the key (header "<key>/<i>") is held to the same rule
        batch_key = {"Idempotency-Key": f"{key}-batch"}
        accepted = client.post(f"{stack.url}/v1/jobs:batch", json={"jobs": [{"input": "a"}]},
                               headers=batch_key)
        assert accepted.json()["results"][0]["status"] == 202
        clash = client.post(f"{second_api}/v1/jobs:batch", json={"jobs": [{"input": "b"}]},
                            headers=batch_key)
        assert clash.json()["results"][0]["status"] == 409, clash.text
    status = stack.finished(first.json()["jobId"], "mallory")
    assert status["status"] == "succeeded", status
    stack.normal_job_succeeds()


async def test_concurrent_submissions_on_two_processes_accept_one_payload(
    stack: Stack, second_api: str
) -> None:
    for round_ in range(5):
        key = f"race-{uuid.uuid4()}"
        headers = {"Authorization": f"Bearer {stack.keys['mallory']}", "Idempotency-Key": key}
        async with httpx.AsyncClient(timeout=60, headers=headers) as client:
            answers = await asyncio.gather(
                client.post(f"{stack.url}/v1/jobs", json={"input": f"one {round_}"}),
                client.post(f"{second_api}/v1/jobs", json={"input": f"two {round_}"}),
            )
        assert sorted(r.status_code for r in answers) == [202, 409], [r.text for r in answers]
