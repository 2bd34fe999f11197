"""Signed job callbacks: POST a job's final state to its ``callbackUrl``.

The body is canonical JSON, signed with the tenant's own secret (:mod:`brigade.signing`):
``X-Brigade-Signature: sha256=<hex>`` over ``"<timestamp>." + body`` with the timestamp in
``X-Brigade-Timestamp``. ``X-Brigade-Delivery`` is the same for every attempt of one job's
callback: delivery is at-least-once, receivers dedupe on it.

The target is checked at delivery, on the address it resolves to *now*: the host is
resolved once, every address must be public (unless the tenant is in
``callbacks.private_tenants``, or ``callbacks.allow_private`` is set for the deployment),
and the request goes to that checked address (the Host header and TLS name stay the
URL's), so a name cannot resolve to a public address for the check and a private one for
the connection (DNS rebinding). Redirects are not followed.
"""

from __future__ import annotations

import asyncio
import random
import socket
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import urlsplit

import httpx

from brigade.addresses import is_public_address
from brigade.errors import BrigadeError
from brigade.ids import canonical_json
from brigade.settings import CallbackSettings
from brigade.signing import (
    ATTEMPT_HEADER,
    DELIVERY_HEADER,
    SIGNATURE_HEADER,
    TIMESTAMP_HEADER,
    derive_secret,
    sign,
    verify,
)

__all__ = [
    "ATTEMPT_HEADER", "DELIVERY_HEADER", "SIGNATURE_HEADER", "TIMESTAMP_HEADER", "CallbackAttempt",
    "CallbackRefused", "CallbackSender", "Target", "backoff", "check_target", "is_public_address", "sign",
    "tenant_secret", "verify",
]


class CallbackRefused(BrigadeError):
    """The callback cannot be sent at all (unsafe target, no secret); retrying will not help."""


class Resolver(Protocol):
    """Resolves a host name to addresses (the system resolver by default)."""

    async def __call__(self, host: str, port: int) -> list[str]: ...


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address ``host`` resolves to, through the event loop's ``getaddrinfo``."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


@dataclass(frozen=True, kw_only=True)
class CallbackAttempt:
    """What one delivery attempt did; becomes a ``callback`` WorkOutcome."""

    number: int
    url: str
    ok: bool
    status: int | None = None
    error: str | None = None


@dataclass(frozen=True, kw_only=True)
class Target:
    """A callback URL with the one address it was checked against."""

    url: str
    host: str
    address: str
    port: int

    def request_url(self) -> httpx.URL:
        """The URL with the checked address as its host (the connection goes there)."""
        return httpx.URL(self.url).copy_with(host=self.address)

    def host_header(self) -> str:
        """The Host header the receiver expects (the URL's own authority)."""
        netloc = urlsplit(self.url).netloc
        return netloc.rsplit("@", 1)[-1]


def tenant_secret(settings: CallbackSettings, tenant_id: str) -> bytes:
    """The tenant's configured secret, else one derived from ``secret_key``."""
    configured = settings.secrets.get(tenant_id)
    if configured is not None:
        return configured.encode()
    if settings.secret_key is not None:
        return derive_secret(settings.secret_key, tenant_id)
    raise CallbackRefused(
        f"no callback secret for tenant {tenant_id!r}: set callbacks.secrets or callbacks.secret_key"
    )


async def check_target(url: str, *, allow_private: bool, resolver: Resolver = system_resolver) -> Target:
    """Resolve the URL's host once and check every address; the target to connect to.

    Raises:
        CallbackRefused: not http(s), no host, credentials in the URL, a name that does not
            resolve, or (unless ``allow_private``) any resolved address that is not public.
    """
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as exc:
        raise CallbackRefused(f"callback URL has a bad port: {url!r}") from exc
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CallbackRefused(f"callback URL must be http(s) with a host: {url!r}")
    if parts.username or parts.password:
        raise CallbackRefused("credentials in the callback URL are not allowed")
    try:
        addresses = await resolver(parts.hostname, port)
    except OSError as exc:
        raise CallbackRefused(f"callback host {parts.hostname!r} does not resolve: {exc}") from exc
    if not addresses:
        raise CallbackRefused(f"callback host {parts.hostname!r} resolves to nothing")
    bad = sorted({a for a in addresses if not is_public_address(a)})
    if bad and not allow_private:
        raise CallbackRefused(f"callback host {parts.hostname!r} resolves to non-public {', '.join(bad)}")
    return Target(url=url, host=parts.hostname, address=addresses[0].split("%")[0], port=port)


_REFUSED = "refused: "


def backoff(attempt: int, *, base: float, cap: float, rng: random.Random | None = None) -> float:
    """Full-jitter exponential backoff before attempt ``attempt + 1`` (attempt counts from 1)."""
    ceiling = min(cap, base * 2 ** (attempt - 1))
    return (rng or random).uniform(ceiling / 2, ceiling)


def _retryable(status: int) -> bool:
    return status in (408, 425, 429) or status >= 500


class CallbackSender:
    """Delivers callbacks with bounded retries; owns one HTTP client (close with ``aclose``)."""

    def __init__(
        self,
        *,
        settings: CallbackSettings,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.settings = settings
        self.resolver = resolver
        self._client = client or httpx.AsyncClient(timeout=settings.timeout_s, follow_redirects=False)

    def allows_private(self, tenant_id: str) -> bool:
        """Whether ``tenant_id``'s callbacks may go to loopback or private addresses."""
        return self.settings.allow_private or tenant_id in self.settings.private_tenants

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
        except CallbackRefused as exc:
            await on_attempt(CallbackAttempt(number=1, url=url, ok=False, error=str(exc)))
            return False
        body = canonical_json(payload).encode()
        for number in range(1, self.settings.max_attempts + 1):
            attempt = await self._attempt(url, tenant_id, body, secret, delivery_id, number)
            if attempt.error is not None and attempt.error.startswith(_REFUSED):
                await on_attempt(attempt)
                return False
            await on_attempt(attempt)
            if attempt.ok or (attempt.status is not None and not _retryable(attempt.status)):
                return attempt.ok
            if number < self.settings.max_attempts:
                s = self.settings
                await asyncio.sleep(backoff(number, base=s.backoff_base_s, cap=s.backoff_cap_s))
        return False

    async def _attempt(
        self, url: str, tenant_id: str, body: bytes, secret: bytes, delivery_id: str, number: int
    ) -> CallbackAttempt:
        # Checked on every attempt: the name may resolve elsewhere by the time of a retry.
        try:
            allow = self.allows_private(tenant_id)
            target = await check_target(url, allow_private=allow, resolver=self.resolver)
        except CallbackRefused as exc:
            return CallbackAttempt(number=number, url=url, ok=False, error=f"{_REFUSED}{exc}")
        return await self._post(target, body, secret, delivery_id, number)

    async def _post(
        self, target: Target, body: bytes, secret: bytes, delivery_id: str, number: int
    ) -> CallbackAttempt:
        url = target.url
        timestamp = int(time.time())
        headers = {
            "Content-Type": "application/json",
            "Host": target.host_header(),
            TIMESTAMP_HEADER: str(timestamp),
            SIGNATURE_HEADER: sign(secret, timestamp, body),
            DELIVERY_HEADER: delivery_id,
            ATTEMPT_HEADER: str(number),
        }
        extensions = {"sni_hostname": target.host} if urlsplit(url).scheme == "https" else {}
        try:
            response = await self._client.post(
                target.request_url(), content=body, headers=headers, extensions=extensions
            )
        except httpx.HTTPError as exc:
            return CallbackAttempt(number=number, url=url, ok=False, error=f"{type(exc).__name__}: {exc}")
        ok = 200 <= response.status_code < 300
        error = None if ok else f"HTTP {response.status_code}"
        return CallbackAttempt(number=number, url=url, ok=ok, status=response.status_code, error=error)
