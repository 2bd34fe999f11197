"""The OpenAPI 3.1 document, built from the same pydantic models that validate requests."""

from __future__ import annotations

import json
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from brigade.settings import Settings
from ingress import admin, payloads
from ingress import models as m

_REF = "#/components/schemas/{model}"
_ERROR_CODES = {
    "400": "Malformed JSON",
    "401": "Missing or invalid API key",
    "404": "Unknown job (for this tenant)",
    "409": "Conflict",
    "413": "Body too large",
    "422": "Schema violation; the body names the fields",
    "429": "Rate limited (see Retry-After)",
    "503": "Overloaded or broker unavailable (see Retry-After)",
}
_SCHEMA_MODELS: list[type[BaseModel]] = [
    m.JobRequest,
    m.BatchRequest,
    m.JobAccepted,
    m.BatchAccepted,
    m.JobStatusBody,
    m.JobResultBody,
    m.JobEventsBody,
    m.CancelRequest,
    m.CancelAccepted,
    m.ErrorBody,
    m.Health,
    admin.ClickHouseRequest,
    payloads.PayloadUpload,
    payloads.PayloadStored,
]


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _json(model: type[BaseModel], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _ref(model)}}}


def _errors(*codes: str) -> dict[str, Any]:
    return {code: _json(m.ErrorBody, _ERROR_CODES[code]) for code in codes}


def _retry_after(response: dict[str, Any]) -> dict[str, Any]:
    header = {"description": "Seconds to wait", "schema": {"type": "string", "pattern": "^[0-9]+$"}}
    return {**response, "headers": {"Retry-After": header}}


def _job_id_param() -> dict[str, Any]:
    return {"name": "jobId", "in": "path", "required": True, "schema": {"type": "string", "minLength": 1}}


def _submit_ops(max_wait: float) -> dict[str, Any]:
    key = {
        "name": "Idempotency-Key",
        "in": "header",
        "required": False,
        "schema": {"type": "string", "minLength": 1, "maxLength": 256},
    }
    wait = {
        "name": "wait",
        "in": "query",
        "required": False,
        "description": "Seconds to long-poll for the terminal state.",
        "schema": {"type": "number", "minimum": 0, "maximum": max_wait},
    }
    errors = _errors("400", "401", "409", "413", "422", "429", "503")
    for code in ("429", "503"):
        errors[code] = _retry_after(errors[code])
    single = {
        "operationId": "submitJob",
        "summary": "Submit one job",
        "parameters": [key, wait],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(m.JobRequest)}}},
        "responses": {
            "202": _json(m.JobAccepted, "Accepted and durably stored"),
            "200": _json(m.JobAccepted, "Same key and payload as an earlier job, or finished"),
            **errors,
        },
    }
    batch_errors = {k: v for k, v in errors.items() if k != "409"}
    batch = {
        "operationId": "submitBatch",
        "summary": "Submit many jobs; each item answered on its own",
        "parameters": [key],
        "requestBody": {"required": True, "content": {"application/json": {"schema": _ref(m.BatchRequest)}}},
        "responses": {"200": _json(m.BatchAccepted, "Per-item results"), **batch_errors},
    }
    return {"/v1/jobs": {"post": single}, "/v1/jobs:batch": {"post": batch}}


def _read_ops() -> dict[str, Any]:
    param = [_job_id_param()]
    return {
        "/v1/jobs/{jobId}": {
            "get": {
                "operationId": "getJob",
                "summary": "A job's status",
                "parameters": param,
                "responses": {"200": _json(m.JobStatusBody, "Status"), **_errors("401", "404")},
            }
        },
        "/v1/jobs/{jobId}/result": {
            "get": {
                "operationId": "getJobResult",
                "summary": "A finished job's output",
                "parameters": param,
                "responses": {"200": _json(m.JobResultBody, "Output"), **_errors("401", "404", "409")},
            }
        },
        "/v1/jobs/{jobId}/events": {
            "get": {
                "operationId": "getJobEvents",
                "summary": "A job's lifecycle events",
                "parameters": param,
                "responses": {"200": _json(m.JobEventsBody, "Events"), **_errors("401", "404")},
            }
        },
        "/v1/jobs/{jobId}/cancel": {
            "post": {
                "operationId": "cancelJob",
                "summary": "Ask for a job's cancellation",
                "parameters": param,
                "requestBody": {
                    "required": False,
                    "content": {"application/json": {"schema": _ref(m.CancelRequest)}},
                },
                "responses": {
                    "202": _json(m.CancelAccepted, "Cancellation recorded"),
                    **_errors("400", "401", "404", "409", "413", "422", "503"),
                },
            }
        },
    }


def _public_ops() -> dict[str, Any]:
    text = {
        "description": "Prometheus text format",
        "content": {"text/plain": {"schema": {"type": "string"}}},
    }
    doc = {"description": "This document", "content": {"application/json": {"schema": {"type": "object"}}}}
    return {
        "/healthz": {
            "get": {
                "operationId": "healthz",
                "summary": "Process alive",
                "security": [],
                "responses": {"200": _json(m.Health, "Alive")},
            }
        },
        "/readyz": {
            "get": {
                "operationId": "readyz",
                "summary": "Broker reachable and topics present",
                "security": [],
                "responses": {"200": _json(m.Health, "Ready"), "503": _json(m.Health, "Not ready")},
            }
        },
        "/metrics": {
            "get": {
                "operationId": "metrics",
                "summary": "Prometheus metrics (operator token; series are labelled by tenant)",
                "security": [{"operator": []}],
                "responses": {"200": text, "401": _json(m.ErrorBody, "Missing or wrong operator token")},
            }
        },
        "/openapi.json": {
            "get": {
                "operationId": "openapi",
                "summary": "OpenAPI document",
                "security": [],
                "responses": {"200": doc},
            }
        },
    }


def build_openapi(settings: Settings) -> dict[str, Any]:
    """The complete OpenAPI 3.1 document of the API."""
    _, schemas = models_json_schema([(model, "validation") for model in _SCHEMA_MODELS], ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Brigade",
            "version": "1",
            "description": "Submit inference jobs and follow them; every route but health, "
            "metrics and this document needs an API key (Authorization: Bearer); the operator "
            "endpoint under /v1/admin takes the operator token instead.",
        },
        "servers": [{"url": f"http://{settings.api.host}:{settings.api.port}"}],
        "security": [{"bearer": []}],
        "paths": {
            **_submit_ops(settings.api.max_wait_s),
            **_read_ops(),
            **_public_ops(),
            **admin.openapi_paths(),
            **payloads.openapi_paths(),
        },
        "components": {
            "schemas": schemas.get("$defs", {}),
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer"},
                "operator": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "Operator token from <data dir>/operator-token (not a tenant key)",
                },
            },
        },
    }


def openapi_bytes(settings: Settings) -> bytes:
    """The document as JSON bytes (built once per app)."""
    return json.dumps(build_openapi(settings), separators=(",", ":")).encode()
