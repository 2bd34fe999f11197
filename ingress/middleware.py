"""Pure ASGI middleware: error boundary (outermost), metrics, body size limit, authentication.

Declared in order in ``ingress.app.create_app``; each wraps the next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import MutableMapping
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from brigade.httpserver import error_bytes
from ingress.errors import ApiError, unauthorized
from ingress.metrics import ApiMetrics
from ingress.ratelimit import RateLimiter
from ingress.tenants import Tenant, TenantStore

log = logging.getLogger(__name__)
TENANT_SCOPE_KEY = "brigade.tenant"


async def send_json(send: Send, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
    """Send a complete JSON response from ASGI middleware."""
    raw = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
    raw += [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": body})


class ErrorBoundary:
    """Turns any exception that escapes into a JSON 500, once, and logs it with its cause."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def _send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, receive, _send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            await send_json(send, 500, error_bytes("internal_error", "internal error"))


class MetricsMiddleware:
    """Counts requests by route template and status, and times them."""

    def __init__(self, app: ASGIApp, *, metrics: ApiMetrics) -> None:
        self.app = app
        self.metrics = metrics
        # labels() takes a lock and builds a key per call; the children never change.
        self._children: dict[tuple[str, str, int], tuple[Any, Any]] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status = 500
        started = time.perf_counter()

        async def _send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, _send)
        finally:
            route = getattr(scope.get("route"), "path", "unmatched")
            count, timing = self._series(scope["method"], route, status)
            count.inc()
            timing.observe(time.perf_counter() - started)

    def _series(self, method: str, route: str, status: int) -> tuple[Any, Any]:
        key = (method, route, status)
        series = self._children.get(key)
        if series is None:
            series = (
                self.metrics.requests.labels(method, route, str(status)),
                self.metrics.request_seconds.labels(route),
            )
            self._children[key] = series
        return series


class BodyLimit:
    """413 for bodies over ``max_bytes``: by Content-Length up front, else while streaming."""

    def __init__(self, app: ASGIApp, *, max_bytes: int) -> None:
        self.app = app
        self.max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        length = _header(scope, b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            await send_json(send, 413, self._too_large().body())
            return
        seen = 0

        async def _receive() -> Message:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.max_bytes:
                raise self._too_large()
            return message

        await self.app(scope, _receive, send)

    def _too_large(self) -> ApiError:
        return ApiError(413, "payload_too_large", f"request body is larger than {self.max_bytes} bytes")


class Authenticate:
    """Resolves the API key to a tenant and charges the tenant's request bucket.

    Public paths (health, metrics, the OpenAPI document) pass without a key.
    """

    def __init__(
        self,
        app: ASGIApp,
        *,
        tenants: TenantStore,
        limiter: RateLimiter,
        metrics: ApiMetrics,
        public: frozenset[str],
    ) -> None:
        self.app = app
        self.tenants = tenants
        self.limiter = limiter
        self.metrics = metrics
        self.public = public

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in self.public:
            await self.app(scope, receive, send)
            return
        key = _api_key(scope)
        tenant = self.tenants.authenticate(key) if key else None
        if tenant is None:
            error = unauthorized()
            await send_json(send, error.status, error.body(), error.headers)
            return
        refusal = self.limiter.request(tenant)
        if refusal is not None:
            self.metrics.rate_limited.labels(tenant.tenant_id, refusal.limit).inc()
            error = ApiError(
                429,
                "rate_limited",
                f"over the tenant's {refusal.limit} rate limit",
                headers={"Retry-After": refusal.retry_after_header},
            )
            await send_json(send, 429, error.body(), error.headers)
            return
        scope[TENANT_SCOPE_KEY] = tenant
        await self.app(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            text: str = value.decode("latin-1")
            return text
    return None


def _api_key(scope: Scope) -> str | None:
    auth = _header(scope, b"authorization")
    if auth is not None:
        scheme, _, token = auth.partition(" ")
        return token.strip() or None if scheme.lower() == "bearer" else None
    return _header(scope, b"x-api-key")


def tenant_of(scope: MutableMapping[str, Any]) -> Tenant:
    """The authenticated tenant of a request (set by ``Authenticate``)."""
    tenant: Tenant = scope[TENANT_SCOPE_KEY]
    return tenant
