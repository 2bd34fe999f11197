"""Callback attacks: making a worker POST to loopback or private addresses, and forging deliveries.

At the door, literal private targets in any spelling are a 422. At delivery the worker
resolves the name once, checks every address and connects to the checked one, and only
tenants in ``callbacks.private_tenants`` (the dev tenant by default) may reach private
addresses, however ``brigade up`` runs. Receivers check signatures with the tenant's own
secret (``brigade tenants secret``) and reject stale and replayed deliveries.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brigade.settings import CallbackSettings
from ingress.client import CallbackRejected, CallbackVerifier
from testkit.support import poll_until
from tests.hostile.conftest import Stack
from tests.workers.uvicorn_server import serve
from workers.callbacks import CallbackAttempt, CallbackSender

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


class Receiver:
    """A real HTTP receiver on loopback that keeps every delivery."""

    def __init__(self) -> None:
        self.deliveries: list[tuple[dict[str, str], bytes]] = []

    async def hook(self, request: Request) -> Response:
        self.deliveries.append((dict(request.headers), await request.body()))
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        return Response(b"{}", media_type="application/json")

    def app(self) -> Starlette:
        routes = [Route("/hook", self.hook, methods=["POST"]), Route("/healthz", self.healthz)]
        return Starlette(routes=routes)


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()
    with serve(rx.app()) as url:
        yield rx, url


@pytest.mark.parametrize("target", [
    "http://127.1/hook", "http://0x7f.1/hook", "http://2130706433/hook", "http://0177.0.0.1/hook",
    "http://[::ffff:127.0.0.1]/hook", "http://0.0.0.0/hook", "http://[::]/hook", "http://localhost/hook",
    "http://10.0.0.1/hook", "http://169.254.169.254/latest/meta-data", "http://[64:ff9b::7f00:1]/hook",
])
def test_private_targets_in_any_spelling_are_422(stack: Stack, target: str) -> None:
    with stack.client("mallory") as client:
        response = client.post("/v1/jobs", json={"input": "x", "callbackUrl": target})
    assert response.status_code == 422, response.text
    assert [f["field"] for f in response.json()["error"]["fields"]] == ["callbackUrl"]


def _events(stack: Stack, tenant: str, job_id: str) -> list[dict[str, Any]]:
    with stack.client(tenant) as client:
        events: list[dict[str, Any]] = client.get(f"/v1/jobs/{job_id}/events").json()["events"]
        return events


def _callback_attempts(stack: Stack, tenant: str, job_id: str) -> list[dict[str, Any]]:
    return [e for e in _events(stack, tenant, job_id) if e["type"] == "JobCallbackAttempted"]


def test_dev_tenant_reaches_its_loopback_receiver_and_deliveries_verify(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    rx, url = receiver
    with stack.client("dev") as client:
        job = client.post("/v1/jobs", json={"input": "call me back", "callbackUrl": f"{url}/hook"})
    assert job.status_code == 202, job.text
    poll_until(lambda: rx.deliveries, timeout_s=120, what="the dev tenant's callback")
    headers, body = rx.deliveries[0]
    shown = stack.cli("tenants", "secret", "dev")
    assert shown.returncode == 0, shown.stderr
    secret = shown.stdout.strip()
    verifier = CallbackVerifier(secret)
    assert verifier.verify(headers, body)["jobId"] == job.json()["jobId"]
    with pytest.raises(CallbackRejected, match="replay"):
        verifier.verify(headers, body)
    with pytest.raises(CallbackRejected, match="from now"):
        CallbackVerifier(secret).verify(headers, body, now=time.time() + 3600)
    other = stack.cli("tenants", "secret", "acme").stdout.strip()
    assert other and other != secret
    with pytest.raises(CallbackRejected, match="signature"):
        CallbackVerifier(other).verify(headers, body)


def test_worker_refuses_private_targets_for_tenants_not_listed(
    stack: Stack, receiver: tuple[Receiver, str]
) -> None:
    # Given a tenant whose API entry allows private callbacks (so the door lets it through)
    # but which the workers' callbacks.private_tenants does not list
    stack.add_tenant("insider", "--allow-private-callbacks")
    rx, url = receiver

    def _submitted() -> str | None:
        with stack.client("insider") as client:
            response = client.post("/v1/jobs", json={"input": "insider", "callbackUrl": f"{url}/hook"})
        return str(response.json()["jobId"]) if response.status_code == 202 else None

    job_id = poll_until(_submitted, timeout_s=30, what="the API to load the insider tenant")
    # Then the worker, seeing 127.0.0.1 at delivery, refuses: nothing reaches the receiver
    attempts = poll_until(lambda: _callback_attempts(stack, "insider", job_id), timeout_s=120,
                    what="the callback attempt")
    assert attempts[0]["detail"]["ok"] is False
    assert "non-public 127.0.0.1" in attempts[0]["detail"]["error"]
    assert rx.deliveries == []
    stack.normal_job_succeeds()


class _Resolver:
    """Resolves every name to the given addresses, in turn; counts the look-ups."""

    def __init__(self, *answers: list[str]) -> None:
        self.answers = list(answers)
        self.calls = 0

    async def __call__(self, host: str, port: int) -> list[str]:
        self.calls += 1
        return self.answers[min(self.calls, len(self.answers)) - 1]


async def _deliver(sender: CallbackSender, url: str, tenant: str) -> tuple[bool, list[CallbackAttempt]]:
    attempts: list[CallbackAttempt] = []

    async def record(attempt: CallbackAttempt) -> None:
        attempts.append(attempt)

    ok = await sender.deliver(url=url, tenant_id=tenant, delivery_id="d-1", payload={"jobId": "j"},
                              on_attempt=record)
    return ok, attempts


async def test_names_resolving_to_loopback_are_refused_and_the_checked_address_is_used(
    receiver: tuple[Receiver, str],
) -> None:
    rx, url = receiver
    port = url.rsplit(":", 1)[1]
    settings = CallbackSettings(secret_key="k", max_attempts=1)
    hook = f"http://hooks.example.com:{port}/hook"
    # A name that resolves to loopback (or to a public and a loopback address) is refused
    for answers in (["127.0.0.1"], ["::ffff:127.0.0.1"], ["93.184.215.14", "127.0.0.1"]):
        sender = CallbackSender(settings=settings, resolver=_Resolver(answers))
        ok, attempts = await _deliver(sender, hook, "acme")
        await sender.aclose()
        assert not ok and "non-public" in (attempts[0].error or ""), answers
    assert rx.deliveries == []
    # For an allowed tenant the name is resolved once and the connection goes to that
    # address, so a second answer (a rebinding) is never looked up
    resolver = _Resolver(["127.0.0.1"], ["10.9.9.9"])
    sender = CallbackSender(settings=settings, resolver=resolver)
    ok, attempts = await _deliver(sender, hook, "dev")
    await sender.aclose()
    assert ok, attempts
    assert resolver.calls == 1
    assert rx.deliveries[0][0]["host"] == f"hooks.example.com:{port}"
