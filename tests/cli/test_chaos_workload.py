"""The chaos workload's mix, and the receiver's verification, without a stack."""

from __future__ import annotations

import json
import socket
import time
from urllib.parse import urlsplit

from hypothesis import given
from hypothesis import strategies as st

from cli.chaos.receiver import Receiver, refuses_first_attempt
from cli.chaos.workload import plan_jobs
from testkit.support import poll_until
from workers.callbacks import ATTEMPT_HEADER, DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, sign

TENANTS = ["a", "b", "c"]


@given(st.integers(1, 400), st.integers(0, 1000))
def test_every_job_is_unique_and_spread_over_tenants(count: int, seed: int) -> None:
    jobs = plan_jobs(count, tenants=TENANTS, run_id="r", callback_url="http://cb", seed=seed)
    assert [j.index for j in jobs] == list(range(count))
    assert len({j.body["input"] for j in jobs}) == len({j.idempotency_key for j in jobs}) == count
    assert {j.tenant for j in jobs} == set(TENANTS[: min(count, 3)])
    assert all(j.body["callbackUrl"].startswith("http://cb/") for j in jobs if j.has_callback)


def test_the_mix_has_every_kind_of_job() -> None:
    jobs = plan_jobs(3000, tenants=TENANTS, run_id="r", callback_url="http://cb")
    priorities = {j.body["priority"] for j in jobs}
    cancels = {j.cancel for j in jobs}
    assert priorities == {"interactive", "batch"}
    assert cancels == {"", "queued", "running"}
    assert 0.15 < sum(j.has_callback for j in jobs) / len(jobs) < 0.35


def _post(receiver: Receiver, job: str, *, attempt: int = 1, secret: bytes = b"s-a") -> int:
    body = json.dumps({"jobId": job, "tenantId": "a", "status": "succeeded"}).encode()
    now = int(time.time())
    headers = {SIGNATURE_HEADER: sign(secret, now, body), TIMESTAMP_HEADER: str(now),
               DELIVERY_HEADER: job, ATTEMPT_HEADER: str(attempt)}
    return receiver.answer({k.lower(): v for k, v in headers.items()}, body)


def test_receiver_counts_only_verified_deliveries_and_refuses_some_first_attempts() -> None:
    receiver = Receiver(lambda tenant: f"s-{tenant}".encode())
    refused = next(f"job-{n}" for n in range(100) if refuses_first_attempt(f"job-{n}"))
    accepted = next(f"job-{n}" for n in range(100) if not refuses_first_attempt(f"job-{n}"))
    assert _post(receiver, refused) == 503
    assert _post(receiver, refused, attempt=2) == 200
    assert _post(receiver, accepted) == 200
    assert _post(receiver, "forged", secret=b"wrong") == 401
    assert receiver.delivered() == {refused, accepted}
    assert receiver.counts() == {"verified": 2, "redelivered": 0, "unverified": 1, "refused_503": 1,
                                 "aborted": 0}
    receiver.close()


def test_a_delivery_cut_off_mid_body_is_aborted_not_unverified() -> None:
    receiver = Receiver(lambda tenant: f"s-{tenant}".encode())
    receiver.start()
    try:
        # Given a sender that dies after half of its body (a worker SIGKILLed while sending)
        url = urlsplit(receiver.url)
        with socket.create_connection((url.hostname or "", url.port or 0)) as conn:
            conn.sendall(b"POST /callbacks/x HTTP/1.1\r\nHost: r\r\nContent-Length: 100\r\n\r\n{\"jobId\": ")
        # Then the receiver counts an aborted delivery, not a forged one
        poll_until(lambda: receiver.counts()["aborted"] == 1, what="the aborted delivery counted")
        assert receiver.counts()["unverified"] == 0
    finally:
        receiver.close()
