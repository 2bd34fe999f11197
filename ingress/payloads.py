"""``POST /v1/payloads``: large inputs stored by the API, then named by ``payloadRef``.

The object lands under ``<object store>/payloads/<tenant>/<sha256 of its bytes>.json``,
so the same input uploaded twice is one object, and the returned ``payloadRef`` is the only
kind of reference a job may carry (:mod:`brigade.payloadrefs`). Each tenant has a quota of
stored bytes (``payload_quota_bytes``), counting these uploads and the inputs the API
offloads itself; the write that would pass it is a 413.
"""

from __future__ import annotations

import hashlib
from typing import Any

from pydantic import BaseModel
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from brigade.ids import canonical_json
from brigade.objectstore import ObjectStoreError, object_exists, write_bytes
from brigade.payloadrefs import payload_url
from ingress.errors import ApiError
from ingress.http import ingress_of, parse_body, respond
from ingress.middleware import tenant_of
from ingress.models import ChatInput, FieldError
from ingress.quota import PayloadQuota

PAYLOADS_PATH = "/v1/payloads"


class PayloadStored(BaseModel):
    """Where the uploaded payload is: pass ``payloadRef`` in a job instead of ``input``."""

    payloadRef: str
    size: int
    sha256: str


class PayloadUpload(BaseModel):
    """``POST /v1/payloads``: the model input, as ``input`` would carry it in a job."""

    input: str | ChatInput


def _store(quota: PayloadQuota, tenant_id: str, data: bytes) -> PayloadStored:
    settings = quota.settings
    digest = hashlib.sha256(data).hexdigest()
    ref = payload_url(settings.object_store_url, tenant_id, digest)
    if not object_exists(ref):
        quota.reserve(tenant_id, len(data))
        write_bytes(ref, data)
    return PayloadStored(payloadRef=ref, size=len(data), sha256=digest)


async def upload_payload(request: Request) -> Response:
    """``POST /v1/payloads``: store an input for this tenant; 201 with its ``payloadRef``."""
    ingress = ingress_of(request)
    tenant = tenant_of(request.scope)
    body = parse_body(await request.body(), PayloadUpload)
    value = body.input
    plain = value.model_dump(mode="json", exclude_unset=True) if isinstance(value, ChatInput) else value
    data = canonical_json(plain).encode()
    limit = ingress.settings.max_payload_bytes
    if len(data) > limit:
        raise ApiError(
            413,
            "payload_too_large",
            f"a stored payload may be at most {limit} bytes",
            fields=[FieldError(loc=["input"], field="input", msg=f"at most {limit} bytes", type="too_large")],
        )
    try:
        stored = await run_in_threadpool(_store, ingress.quota, tenant.tenant_id, data)
    except ObjectStoreError as exc:
        raise ApiError(503, "store_unavailable", str(exc), headers={"Retry-After": "5"}) from exc
    return respond(stored, 201)


def openapi_paths() -> dict[str, Any]:
    """The upload route's OpenAPI path item."""
    error = {"content": {"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}}}
    return {
        PAYLOADS_PATH: {
            "post": {
                "operationId": "uploadPayload",
                "summary": "Store a large input; reference it from a job as payloadRef",
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/PayloadUpload"}}
                    },
                },
                "responses": {
                    "201": {
                        "description": "Stored (or already stored)",
                        "content": {
                            "application/json": {"schema": {"$ref": "#/components/schemas/PayloadStored"}}
                        },
                    },
                    "400": {"description": "Malformed JSON", **error},
                    "401": {"description": "Missing or invalid API key", **error},
                    "413": {"description": "Too large, or the tenant's payload quota is used up", **error},
                    "422": {"description": "Schema violation; the body names the fields", **error},
                    "429": {"description": "Rate limited", **error},
                    "503": {"description": "Object store unavailable", **error},
                },
            }
        }
    }
