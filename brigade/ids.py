"""Deterministic identifiers: the same request or transition always gets the same id.

Redelivery is normal in Kafka; deterministic ids turn it into a no-op downstream
(projections dedupe on event ids, the processor on job ids).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from typing import Any

JOB_NAMESPACE = uuid.UUID("6b3f2a5e-1c0d-5e7a-9b1f-0d2c4e6a8b10")
EVENT_NAMESPACE = uuid.UUID("a1d9c3e7-5b2f-5d8a-8c4e-2f6b0a9d7e31")
_JOB_PREFIX, _EVENT_PREFIX = JOB_NAMESPACE.bytes, EVENT_NAMESPACE.bytes  # UUID.bytes is computed per call


# One encoder for every call: ``json.dumps`` with options builds a new one each time, which
# cost as much as encoding a small payload.
_CANONICAL = json.JSONEncoder(sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: stable across clients."""
    return _CANONICAL.encode(value)


def uuid5_text(namespace: uuid.UUID, name: str) -> str:
    """``str(uuid.uuid5(namespace, name))`` without building a ``UUID`` object.

    Ingress derives two ids per job; the ``UUID`` object's integer round trip was most of
    their cost. The bytes are RFC 4122's: the first 16 bytes of SHA-1(namespace + name)
    with the version (5) and variant bits set.
    """
    return _uuid5(namespace.bytes, name)


def _uuid5(namespace: bytes, name: str) -> str:
    text = hashlib.sha1(namespace + name.encode(), usedforsecurity=False).hexdigest()
    # Version nibble 5 at hex digit 12; the variant's top bits (10) at hex digit 16.
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 0x3] for digit in "0123456789abcdef"}


def payload_sha256(payload: Any) -> str:
    """sha256 of the canonical JSON form of a job's payload."""
    return text_sha256(canonical_json(payload))


def text_sha256(text: str) -> str:
    """sha256 of a payload already in canonical JSON form (hex)."""
    return hashlib.sha256(text.encode()).hexdigest()


def job_id(tenant_id: str, idempotency_key: str | None, payload_hash: str) -> str:
    """``uuid5(namespace, tenant + ":" + key)``; without a key the payload hash is the key."""
    key = idempotency_key if idempotency_key else payload_hash
    return _uuid5(_JOB_PREFIX, f"{tenant_id}:{key}")


def event_id(job: str, transition: str, attempt: int = 0, detail: str = "") -> str:
    """Deterministic id of a lifecycle event: one job, one transition, one attempt."""
    return _uuid5(_EVENT_PREFIX, f"{job}:{transition}:{attempt}:{detail}")
