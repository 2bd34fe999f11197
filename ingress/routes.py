"""The HTTP routes, as data: each handler parses, calls ``Ingress``, and shapes the answer."""

from __future__ import annotations

import json
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brigade.endpoints import ADMIN_CLICKHOUSE_PATH
from brigade.status import TERMINAL
from ingress.admin import admin_clickhouse, require_operator
from ingress.batch import submit_batch
from ingress.errors import ApiError
from ingress.http import (
    charge_jobs,
    idempotency_key,
    ingress_of,
    parse_body,
    respond,
    status_url,
    wait_seconds,
)
from ingress.middleware import tenant_of
from ingress.models import (
    CancelAccepted,
    CancelRequest,
    Health,
    JobAccepted,
    JobEventBody,
    JobEventsBody,
    JobRequest,
    JobResultBody,
    JobStatusBody,
)
from ingress.payloads import PAYLOADS_PATH, upload_payload
from ingress.service import Ingress
from ingress.tenants import Tenant
from projections.readmodel import JobStatus

_JSON = "application/json"


async def submit_job(request: Request) -> Response:
    """``POST /v1/jobs``."""
    ingress = ingress_of(request)
    tenant = tenant_of(request.scope)
    wait = wait_seconds(request, ingress.settings.api.max_wait_s)
    if wait > 0:
        with ingress.waits.slot(tenant.tenant_id):  # 429 beyond the caps, before submitting
            return await _submit(request, ingress, tenant, wait)
    return await _submit(request, ingress, tenant, 0.0)


async def _submit(request: Request, ingress: Ingress, tenant: Tenant, wait: float) -> Response:
    job_request = parse_body(await request.body(), JobRequest)
    key = idempotency_key(request, job_request.idempotencyKey)
    charge_jobs(ingress, request, 1)
    job = ingress.prepare(tenant, job_request, key)
    submitted = await ingress.submit(tenant, job)
    answer = JobAccepted(
        jobId=submitted.job_id,
        status=submitted.status,  # type: ignore[arg-type]
        statusUrl=status_url(request, submitted.job_id),
        duplicate=submitted.duplicate,
    )
    code = 200 if submitted.duplicate else 202
    if wait > 0:
        status = await ingress.wait(tenant.tenant_id, submitted.job_id, wait)
        if status is not None:
            answer, code = await _with_state(ingress, answer, status), code
            code = 200 if status.status in TERMINAL else code
    return respond(answer, code)


async def _with_state(ingress: Ingress, answer: JobAccepted, status: JobStatus) -> JobAccepted:
    output = await ingress.output(status) if status.status == "succeeded" else None
    return answer.model_copy(update={"status": status.status, "output": output, "error": status.error})


async def submit_batch_route(request: Request) -> Response:
    """``POST /v1/jobs:batch``."""
    return await submit_batch(request, ingress_of(request))


def status_body(status: JobStatus) -> JobStatusBody:
    """The public view of a job's status."""
    return JobStatusBody(
        jobId=status.job_id,
        status=status.status,
        attempts=status.attempts,
        createdAt=status.created_at,
        updatedAt=status.updated_at,
        priority=status.priority,
        pool=status.pool,
        model=status.model,
        cancelRequested=status.cancel_requested,
        error=status.error,
    )


async def get_job(request: Request) -> Response:
    """``GET /v1/jobs/{jobId}``."""
    # The status body shows no result, so a large inline result need not be at hand.
    status = await ingress_of(request).require(
        tenant_of(request.scope).tenant_id, request.path_params["jobId"], with_result=False
    )
    return respond(status_body(status))


async def get_result(request: Request) -> Response:
    """``GET /v1/jobs/{jobId}/result`` (409 until the job succeeded)."""
    ingress = ingress_of(request)
    status = await ingress.require(tenant_of(request.scope).tenant_id, request.path_params["jobId"])
    if status.status != "succeeded":
        raise ApiError(409, "job_not_succeeded", f"job is {status.status}; no result", job_id=status.job_id)
    return respond(JobResultBody(jobId=status.job_id, output=await ingress.output(status)))


async def get_events(request: Request) -> Response:
    """``GET /v1/jobs/{jobId}/events``."""
    ingress = ingress_of(request)
    tenant_id = tenant_of(request.scope).tenant_id
    status = await ingress.require(tenant_id, request.path_params["jobId"])
    events = await ingress.events(tenant_id, status.job_id)
    bodies = [
        JobEventBody(
            eventId=e.event_id,
            sequence=e.sequence,
            type=e.event_type,
            occurredAt=e.occurred_at,
            detail=_jsonable(e.detail),
        )
        for e in events
    ]
    return respond(JobEventsBody(jobId=status.job_id, events=bodies))


def _jsonable(detail: dict[str, Any]) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads(json.dumps(detail, default=str))
    return loaded


async def cancel_job(request: Request) -> Response:
    """``POST /v1/jobs/{jobId}/cancel`` (202; 409 when already finished)."""
    ingress = ingress_of(request)
    raw = await request.body()
    body = parse_body(raw, CancelRequest) if raw.strip() else CancelRequest()
    status = await ingress.cancel(tenant_of(request.scope), request.path_params["jobId"], body.reason)
    return respond(CancelAccepted(jobId=status.job_id, status=status.status), 202)


async def healthz(request: Request) -> Response:
    """Process alive."""
    return respond(Health(status="ok"))


async def readyz(request: Request) -> Response:
    """Broker reachable and the topics the API needs present, as last probed in the background."""
    ingress = ingress_of(request)
    if ingress.readiness is None:
        return respond(Health(status="unavailable", checks={"producer": "not started"}), 503)
    ready, checks = ingress.readiness.state()
    projector, projector_ok = request.app.state.projector_probe.checks()
    checks = {**checks, **projector}
    ready = ready and projector_ok
    return respond(Health(status="ok" if ready else "unavailable", checks=checks), 200 if ready else 503)


async def metrics(request: Request) -> Response:
    """Prometheus text exposition, for the operator only: its series are labelled by tenant.

    Prometheus scrapes the anonymous operator port (``metrics_port``) instead when one is set.
    """
    ingress = ingress_of(request)
    require_operator(request, request.app.state.operator_token)
    return Response(ingress.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8")


async def openapi(request: Request) -> Response:
    """The OpenAPI 3.1 document."""
    document: bytes = request.app.state.openapi
    return Response(document, media_type=_JSON)


ROUTES = [
    Route("/v1/jobs", submit_job, methods=["POST"], name="submit_job"),
    Route("/v1/jobs:batch", submit_batch_route, methods=["POST"], name="submit_batch"),
    Route(PAYLOADS_PATH, upload_payload, methods=["POST"], name="upload_payload"),
    Route("/v1/jobs/{jobId}", get_job, methods=["GET"], name="get_job"),
    Route("/v1/jobs/{jobId}/result", get_result, methods=["GET"], name="get_result"),
    Route("/v1/jobs/{jobId}/events", get_events, methods=["GET"], name="get_events"),
    Route("/v1/jobs/{jobId}/cancel", cancel_job, methods=["POST"], name="cancel_job"),
    Route("/healthz", healthz, methods=["GET"], name="healthz"),
    Route("/readyz", readyz, methods=["GET"], name="readyz"),
    Route("/metrics", metrics, methods=["GET"], name="metrics"),
    Route("/openapi.json", openapi, methods=["GET"], name="openapi"),
    Route(ADMIN_CLICKHOUSE_PATH, admin_clickhouse, methods=["POST"], name="admin_clickhouse"),
]
# Passed without a tenant key; the operator endpoint checks its own token instead.
PUBLIC_PATHS = frozenset({"/healthz", "/readyz", "/metrics", "/openapi.json", ADMIN_CLICKHOUSE_PATH})
