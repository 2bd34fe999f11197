"""Signed callbacks against a real Starlette receiver on a loopback socket."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brigade.settings import CallbackSettings
from workers.callbacks import (
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    CallbackAttempt,
    CallbackRefused,
    CallbackSender,
    backoff,
    check_target,
    sign,
    tenant_secret,
    verify,
)

from .uvicorn_server import serve


class Receiver:
    """Fails the first ``fail_first`` deliveries with 500, then accepts; keeps every request."""

    def __init__(self, fail_first: int = 1) -> None:
        self.fail_first = fail_first
        self.requests: list[tuple[dict[str, str], bytes]] = []

    async def hook(self, request: Request) -> Response:
        self.requests.append((dict(request.headers), await request.body()))
        status = 500 if len(self.requests) <= self.fail_first else 204
        return Response(status_code=status)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"]),
                                 Route("/healthz", self.healthz)])


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver()
    with serve(rx.app()) as url:
        yield rx, url


def _settings(**kw: Any) -> CallbackSettings:
    base: dict[str, Any] = {"secrets": {"t1": "s3cret"}, "allow_private": True,
                            "backoff_base_s": 0.01, "backoff_cap_s": 0.02, "max_attempts": 3}
    base.update(kw)
    return CallbackSettings(**base)


async def test_signed_callback_is_retried_until_accepted(receiver: tuple[Receiver, str]) -> None:
    rx, url = receiver
    sender = CallbackSender(settings=_settings())
    attempts: list[CallbackAttempt] = []

    async def record(attempt: CallbackAttempt) -> None:
        attempts.append(attempt)

    ok = await sender.deliver(url=f"{url}/hook", tenant_id="t1", delivery_id="job-1",
                              payload={"jobId": "job-1", "status": "succeeded"}, on_attempt=record)
    await sender.aclose()
    assert ok
    assert [(a.number, a.status, a.ok) for a in attempts] == [(1, 500, False), (2, 204, True)]
    for headers, body in rx.requests:
        stamp = int(headers[TIMESTAMP_HEADER.lower()])
        assert verify(b"s3cret", stamp, body, headers[SIGNATURE_HEADER.lower()])
        assert headers["x-brigade-delivery"] == "job-1"
    assert rx.requests[0][1] == b'{"jobId":"job-1","status":"succeeded"}'


async def test_gives_up_after_max_attempts(receiver: tuple[Receiver, str]) -> None:
    rx, url = receiver
    rx.fail_first = 99
    sender = CallbackSender(settings=_settings(max_attempts=3))
    attempts: list[CallbackAttempt] = []

    async def record(attempt: CallbackAttempt) -> None:
        attempts.append(attempt)

    ok = await sender.deliver(url=f"{url}/hook", tenant_id="t1", delivery_id="j",
                              payload={}, on_attempt=record)
    await sender.aclose()
    assert not ok and len(attempts) == 3 and len(rx.requests) == 3


async def test_loopback_refused_unless_allowed(receiver: tuple[Receiver, str]) -> None:
    rx, url = receiver
    sender = CallbackSender(settings=_settings(allow_private=False))
    attempts: list[CallbackAttempt] = []

    async def record(attempt: CallbackAttempt) -> None:
        attempts.append(attempt)

    ok = await sender.deliver(url=f"{url}/hook", tenant_id="t1", delivery_id="j",
                              payload={}, on_attempt=record)
    await sender.aclose()
    assert not ok and rx.requests == []
    assert len(attempts) == 1 and "non-public 127.0.0.1" in (attempts[0].error or "")


@pytest.mark.parametrize("url", ["http://10.1.2.3/x", "http://169.254.169.254/latest", "http://[::1]/x",
                                 "ftp://example.com/x", "http:///nohost"])
async def test_private_and_odd_targets_refused(url: str) -> None:
    with pytest.raises(CallbackRefused):
        await check_target(url, allow_private=False)


async def test_public_address_allowed() -> None:
    await check_target("http://93.184.215.14/hook", allow_private=False)


def test_secrets() -> None:
    assert tenant_secret(_settings(), "t1") == b"s3cret"
    derived = tenant_secret(_settings(secret_key="master"), "t2")
    assert derived == tenant_secret(_settings(secret_key="master"), "t2") != tenant_secret(
        _settings(secret_key="master"), "t3")
    with pytest.raises(CallbackRefused, match="no callback secret"):
        tenant_secret(_settings(secrets={}), "t9")


def test_signature_covers_timestamp_and_body() -> None:
    sig = sign(b"k", 100, b"{}")
    assert sig.startswith("sha256=") and verify(b"k", 100, b"{}", sig)
    assert not verify(b"k", 101, b"{}", sig) and not verify(b"k", 100, b"{ }", sig)


def test_backoff_is_bounded() -> None:
    assert all(0.0 < backoff(n, base=0.5, cap=4.0) <= 4.0 for n in range(1, 20))
