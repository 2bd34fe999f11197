"""Callback signatures: what the workers sign and what a receiver checks.

Each tenant has its own secret: ``callbacks.secrets[tenant]`` when configured, else
HMAC-SHA256(deployment key, tenant id) with the deployment key from ``callbacks.secret_key``
or ``<data dir>/callback-secret`` (made once, mode 0600). A tenant never learns the
deployment key or another tenant's secret; ``brigade tenants secret TENANT`` shows one.

``X-Brigade-Signature: sha256=<hex>`` is HMAC-SHA256(tenant secret, ``"<t>." + body``) with
``t`` (unix seconds) in ``X-Brigade-Timestamp``: the timestamp is signed, so a receiver that
rejects old timestamps and remembers recent signatures rejects stale and replayed deliveries.
"""

from __future__ import annotations

import hashlib
import hmac

from brigade.secretfiles import ensure_secret
from brigade.settings import Settings

SIGNATURE_HEADER = "X-Brigade-Signature"
TIMESTAMP_HEADER = "X-Brigade-Timestamp"
DELIVERY_HEADER = "X-Brigade-Delivery"
ATTEMPT_HEADER = "X-Brigade-Attempt"
KEY_FILE = "callback-secret"


def sign(secret: bytes, timestamp: int, body: bytes) -> str:
    """``sha256=<hex>`` of HMAC-SHA256(secret, ``"<timestamp>." + body``)."""
    mac = hmac.new(secret, f"{timestamp}.".encode() + body, hashlib.sha256)
    return "sha256=" + mac.hexdigest()


def verify(secret: bytes, timestamp: int, body: bytes, signature: str) -> bool:
    """Constant-time check of a signature made by :func:`sign` (no freshness check)."""
    return hmac.compare_digest(sign(secret, timestamp, body), signature)


def derive_secret(key: str, tenant_id: str) -> bytes:
    """A tenant's secret derived from the deployment key."""
    return hmac.new(key.encode(), tenant_id.encode(), hashlib.sha256).hexdigest().encode()


def callback_key(settings: Settings) -> str:
    """The deployment's callback key: ``callbacks.secret_key``, else the data dir's key file."""
    if settings.callbacks.secret_key is not None:
        return settings.callbacks.secret_key
    return ensure_secret(settings.path(KEY_FILE))


def tenant_callback_secret(settings: Settings, tenant_id: str) -> bytes:
    """The secret the workers sign ``tenant_id``'s callbacks with."""
    configured = settings.callbacks.secrets.get(tenant_id)
    if configured is not None:
        return configured.encode()
    return derive_secret(callback_key(settings), tenant_id)
