"""A Python client for the HTTP API, sync (``Client``) and async (``AsyncClient``), on httpx.

    with Client("http://127.0.0.1:8000", api_key=key) as client:
        job = client.submit({"input": "hello"}, idempotency_key="greeting-1")
        done = client.wait(job["jobId"], timeout_s=30)
        vector = client.result(job["jobId"])["output"]["embedding"]

Errors come back as ``ApiRequestError`` with the status, the machine-readable code and
``retry_after`` (seconds) for 429 and 503.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from types import TracebackType
from typing import Any

import httpx

from brigade.errors import BrigadeError
from brigade.status import TERMINAL


class ApiRequestError(BrigadeError):
    """The API answered with an error."""

    def __init__(self, status: int, body: Any, *, retry_after: float | None = None) -> None:
        error = body.get("error", {}) if isinstance(body, dict) else {}
        self.status = status
        self.code: str = error.get("code", "http_error")
        self.body = body
        self.retry_after = retry_after
        super().__init__(f"{status} {self.code}: {error.get('message', body)}")


def _check(response: httpx.Response) -> dict[str, Any]:
    try:
        body = response.json()
    except ValueError:
        body = response.text
    if response.status_code >= 400:
        header = response.headers.get("retry-after")
        raise ApiRequestError(
            response.status_code, body, retry_after=float(header) if header and header.isdigit() else None
        )
    result: dict[str, Any] = body
    return result


def _submit_args(job: Mapping[str, Any], idempotency_key: str | None, wait: float | None) -> dict[str, Any]:
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
    params = {"wait": f"{wait:g}"} if wait else {}
    return {"json": dict(job), "headers": headers, "params": params}


class Client:
    """Synchronous client."""

    def __init__(
        self, url: str, *, api_key: str, timeout_s: float = 60.0, transport: httpx.BaseTransport | None = None
    ) -> None:
        self._http = httpx.Client(
            base_url=url,
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    def submit(
        self, job: Mapping[str, Any], *, idempotency_key: str | None = None, wait: float | None = None
    ) -> dict[str, Any]:
        """``POST /v1/jobs``: ``{jobId, status, statusUrl, ...}``."""
        return _check(self._http.post("/v1/jobs", **_submit_args(job, idempotency_key, wait)))

    def submit_batch(
        self, jobs: list[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/jobs:batch``: per-item results."""
        return _check(
            self._http.post("/v1/jobs:batch", **_submit_args({"jobs": jobs}, idempotency_key, None))
        )

    def get(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{jobId}``."""
        return _check(self._http.get(f"/v1/jobs/{job_id}"))

    def events(self, job_id: str) -> list[dict[str, Any]]:
        """``GET /v1/jobs/{jobId}/events``."""
        events: list[dict[str, Any]] = _check(self._http.get(f"/v1/jobs/{job_id}/events"))["events"]
        return events

    def result(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{jobId}/result``: ``{jobId, output}``."""
        return _check(self._http.get(f"/v1/jobs/{job_id}/result"))

    def cancel(self, job_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs/{jobId}/cancel``."""
        return _check(self._http.post(f"/v1/jobs/{job_id}/cancel", json={"reason": reason} if reason else {}))

    def wait(self, job_id: str, *, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict[str, Any]:
        """Poll the status until terminal; the last status (not terminal if the timeout passed)."""
        deadline = time.monotonic() + timeout_s
        status = self.get(job_id)
        while status["status"] not in TERMINAL and time.monotonic() < deadline:
            time.sleep(poll_s)
            status = self.get(job_id)
        return status

    def close(self) -> None:
        """Close the connection pool."""
        self._http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


class AsyncClient:
    """Asynchronous client (same methods, awaitable)."""

    def __init__(
        self,
        url: str,
        *,
        api_key: str,
        timeout_s: float = 60.0,
        transport: httpx.AsyncBaseTransport | None = None,
    ) -> None:
        self._http = httpx.AsyncClient(
            base_url=url,
            timeout=timeout_s,
            transport=transport,
            headers={"Authorization": f"Bearer {api_key}"},
        )

    async def submit(
        self, job: Mapping[str, Any], *, idempotency_key: str | None = None, wait: float | None = None
    ) -> dict[str, Any]:
        """``POST /v1/jobs``."""
        return _check(await self._http.post("/v1/jobs", **_submit_args(job, idempotency_key, wait)))

    async def submit_batch(
        self, jobs: list[Mapping[str, Any]], *, idempotency_key: str | None = None
    ) -> dict[str, Any]:
        """``POST /v1/jobs:batch``."""
        args = _submit_args({"jobs": jobs}, idempotency_key, None)
        return _check(await self._http.post("/v1/jobs:batch", **args))

    async def get(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{jobId}``."""
        return _check(await self._http.get(f"/v1/jobs/{job_id}"))

    async def events(self, job_id: str) -> list[dict[str, Any]]:
        """``GET /v1/jobs/{jobId}/events``."""
        events: list[dict[str, Any]] = _check(await self._http.get(f"/v1/jobs/{job_id}/events"))["events"]
        return events

    async def result(self, job_id: str) -> dict[str, Any]:
        """``GET /v1/jobs/{jobId}/result``."""
        return _check(await self._http.get(f"/v1/jobs/{job_id}/result"))

    async def cancel(self, job_id: str, *, reason: str | None = None) -> dict[str, Any]:
        """``POST /v1/jobs/{jobId}/cancel``."""
        body = {"reason": reason} if reason else {}
        return _check(await self._http.post(f"/v1/jobs/{job_id}/cancel", json=body))

    async def wait(self, job_id: str, *, timeout_s: float = 60.0, poll_s: float = 0.1) -> dict[str, Any]:
        """Poll the status until terminal; the last status."""
        deadline = time.monotonic() + timeout_s
        status = await self.get(job_id)
        while status["status"] not in TERMINAL and time.monotonic() < deadline:
            await asyncio.sleep(poll_s)
            status = await self.get(job_id)
        return status

    async def aclose(self) -> None:
        """Close the connection pool."""
        await self._http.aclose()

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.aclose()


# ---- receiving callbacks ----------------------------------------------------------------


class CallbackRejected(BrigadeError):
    """A callback delivery failed verification: bad or missing signature, stale, or replayed."""


class CallbackVerifier:
    """Checks deliveries to a callback receiver; keep one per receiver process.

    A delivery passes when its signature is the tenant secret's HMAC of
    ``"<X-Brigade-Timestamp>." + body``, its timestamp is within ``tolerance_s`` of now, and
    the same signature was not seen before (a replay of a captured delivery). Signatures are
    remembered for twice the tolerance, after which the timestamp check alone refuses them.
    Brigade retries a callback with a fresh timestamp, so a retry is not a replay; dedupe
    retries of one job on ``X-Brigade-Delivery``.
    """

    def __init__(self, secret: str | bytes, *, tolerance_s: float = 300.0) -> None:
        self._secret = secret.encode() if isinstance(secret, str) else secret
        self.tolerance_s = tolerance_s
        self._seen: dict[str, float] = {}

    def verify(self, headers: Mapping[str, str], body: bytes, *, now: float | None = None) -> dict[str, Any]:
        """The delivery's JSON body once verified.

        Args:
            headers: the request headers (any case).
            body: the raw request body, exactly as received.
            now: the current unix time (tests pass it).

        Raises:
            CallbackRejected: saying which check failed.
        """
        from brigade.signing import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify

        lowered = {k.lower(): v for k, v in headers.items()}
        signature = lowered.get(SIGNATURE_HEADER.lower(), "")
        stamp = lowered.get(TIMESTAMP_HEADER.lower(), "")
        if not signature or not stamp.isdigit():
            raise CallbackRejected("missing signature or timestamp")
        if not verify(self._secret, int(stamp), body, signature):
            raise CallbackRejected("signature does not match")
        now = time.time() if now is None else now
        if abs(now - int(stamp)) > self.tolerance_s:
            raise CallbackRejected(f"timestamp {stamp} is more than {self.tolerance_s:g}s from now")
        self._forget(now)
        if signature in self._seen:
            raise CallbackRejected("this delivery was already received (replay)")
        self._seen[signature] = now
        payload: dict[str, Any] = json.loads(body)
        return payload

    def _forget(self, now: float) -> None:
        horizon = now - 2 * self.tolerance_s
        for signature in [s for s, at in self._seen.items() if at < horizon]:
            del self._seen[signature]


def verify(
    secret: str | bytes, headers: Mapping[str, str], body: bytes, *, tolerance_s: float = 300.0,
    now: float | None = None, verifier: CallbackVerifier | None = None,
) -> dict[str, Any]:
    """Verify one callback delivery (see :class:`CallbackVerifier`); pass ``verifier`` to catch replays.

    Raises:
        CallbackRejected: bad or missing signature, stale timestamp, or a replay.
    """
    checker = verifier or CallbackVerifier(secret, tolerance_s=tolerance_s)
    return checker.verify(headers, body, now=now)
