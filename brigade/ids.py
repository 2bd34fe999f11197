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


def canonical_json(value: Any) -> str:
    """JSON with sorted keys and no insignificant whitespace: stable across clients."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


def payload_sha256(payload: Any) -> str:
    """sha256 of the canonical JSON form of a job's payload."""
    return hashlib.sha256(canonical_json(payload).encode()).hexdigest()


def job_id(tenant_id: str, idempotency_key: str | None, payload_hash: str) -> str:
    """``uuid5(namespace, tenant + ":" + key)``; without a key the payload hash is the key."""
    key = idempotency_key if idempotency_key else payload_hash
    return str(uuid.uuid5(JOB_NAMESPACE, f"{tenant_id}:{key}"))


def event_id(job: str, transition: str, attempt: int = 0, detail: str = "") -> str:
    """Deterministic id of a lifecycle event: one job, one transition, one attempt."""
    return str(uuid.uuid5(EVENT_NAMESPACE, f"{job}:{transition}:{attempt}:{detail}"))
