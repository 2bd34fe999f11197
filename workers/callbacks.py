"""Signed job callbacks: POST a job's final state to its ``callbackUrl``.

The body is canonical JSON; ``X-Brigade-Signature: sha256=<hex>`` is
HMAC-SHA256(tenant secret, ``"<timestamp>." + body``) with the timestamp (unix seconds) in
``X-Brigade-Timestamp``, so a receiver can reject replays older than a few minutes.
``X-Brigade-Delivery`` is the same for every attempt of one job's callback: delivery is
at-least-once, receivers dedupe on it. Targets that resolve to private, loopback,
link-local or reserved addresses are refused unless ``callbacks.allow_private`` is set.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

import httpx

from brigade.errors import BrigadeError
from brigade.ids import canonical_json
from brigade.settings import CallbackSettings

SIGNATURE_HEADER = "X-Brigade-Signature"
TIMESTAMP_HEADER = "X-Brigade-Timestamp"
DELIVERY_HEADER = "X-Brigade-Delivery"
ATTEMPT_HEADER = "X-Brigade-Attempt"


class CallbackRefused(BrigadeError):
    """The callback cannot be sent at all (unsafe target, no secret); retrying will not help."""


@dataclass(frozen=True, kw_only=True)
class CallbackAttempt:
    """What one delivery attempt did; becomes a ``callback`` WorkOutcome."""

    number: int
    url: str
    ok: bool
    status: int | None = None
    error: str | None = None


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"<timestamp>." + body``)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: int, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature made by ``sign`` (what a receiver runs)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def tenant_secret(settings: CallbackSettings, tenant_id: str) -> bytes:
    """The tenant's configured secret, else one derived from ``secret_key``."""
    configured = settings.secrets.get(tenant_id)
    if configured is not None:
        return configured.encode()
    if settings.secret_key is not None:
        return hmac.new(settings.secret_key.encode(), tenant_id.encode(), hashlib.sha256).hexdigest().encode()
    raise CallbackRefused(
        f"no callback secret for tenant {tenant_id!r}: set callbacks.secrets or callbacks.secret_key"
    )


def _is_public(address: str) -> bool:
    ip = ipaddress.ip_address(address.split("%")[0])
    return ip.is_global and not ip.is_multicast


async def check_target(url: str, *, allow_private: bool) -> None:
    """Refuse non-HTTP URLs and, unless allowed, hosts resolving to non-public addresses."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused(f"callback URL must be http(s) with a host: {url!r}")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(parts.hostname, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CallbackRefused(f"callback host {parts.hostname!r} does not resolve: {exc}") from exc
    bad = sorted({str(info[4][0]) for info in infos if not _is_public(str(info[4][0]))})
    if bad:
        raise CallbackRefused(f"callback host {parts.hostname!r} resolves to non-public {', '.join(bad)}")


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before attempt ``attempt + 1`` (attempt counts from 1)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class CallbackSender:
    """Delivers callbacks with bounded retries; owns one HTTP client (close with ``aclose``)."""

    def __init__(self, *, settings: CallbackSettings, client: httpx.AsyncClient | None = None) -> None:
        self.settings = settings
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)

    async def aclose(self) -> None:
        """Close the HTTP client."""
        await self._client.aclose()

    async def deliver(
        self,
        *,
        url: str,
        tenant_id: str,
        delivery_id: str,
        payload: dict[str, Any],
        on_attempt: Callable[[CallbackAttempt], Awaitable[None]],
    ) -> bool:
        """POST ``payload`` until a 2xx, a non-retryable answer, or ``max_attempts``.

        Every attempt (including a refusal before any request) is reported through
        ``on_attempt``. Returns whether the receiver accepted the callback.
        """
        try:
            secret = tenant_secret(self.settings, tenant_id)
            await check_target(url, allow_private=self.settings.allow_private)
        except CallbackRefused as exc:
            await on_attempt(CallbackAttempt(number=1, url=url, ok=False, error=str(exc)))
            return False
        body = canonical_json(payload).encode()
        for number in range(1, self.settings.max_attempts + 1):
            attempt = await self._post(url, body, secret, delivery_id, number)
            await on_attempt(attempt)
            if attempt.ok or (attempt.status is not None and not _retryable(attempt.status)):
                return attempt.ok
            if number < self.settings.max_attempts:
                s = self.settings
                await asyncio.sleep(backoff(number, base=s.backoff_base_s, cap=s.backoff_cap_s))
        return False

    async def _post(
        self, url: str, body: bytes, secret: bytes, delivery_id: str, number: int
    ) -> CallbackAttempt:
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
            ATTEMPT_HEADER: str(number),
        }
        try:
            response = await self._client.post(url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            return CallbackAttempt(number=number, url=url, ok=False, error=f"{type(exc).__name__}: {exc}")
        ok = 200 <= response.status_code < 300
        error = None if ok else f"HTTP {response.status_code}"
        return CallbackAttempt(number=number, url=url, ok=ok, status=response.status_code, error=error)
