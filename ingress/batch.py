"""``POST /v1/jobs:batch``: many jobs in one request, each validated and answered on its own.

Items are published together (the producer batches them) and the request waits for every
ack at once, which is what makes a batch far cheaper per job than single submissions. An
``Idempotency-Key`` header on the batch gives item ``i`` the key ``<header>/<i>`` unless the
item has its own, so retrying a whole batch is safe. Conflicts are detected against this
process's recent jobs only (the read model is not asked per item); the processor's
``JobRejected`` is the backstop for older ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingress.commands import PreparedJob, field_errors
from ingress.errors import ApiError
from ingress.http import charge_jobs, parse_body, status_url
from ingress.middleware import tenant_of
from ingress.models import BatchAccepted, BatchItemResult, BatchRequest, ErrorDetail, JobRequest
from ingress.objectstore import write_bytes
from ingress.service import Ingress
from ingress.tenants import Tenant

# Validating the whole list in one call is ~2x cheaper per item than one call per item.
_ITEMS: TypeAdapter[list[JobRequest]] = TypeAdapter(list[JobRequest])


@dataclass(slots=True)
class _Item:
    index: int
    result: BatchItemResult | None = None  # set once the item is answered
    job: PreparedJob | None = None


def _validate_all(jobs: list[dict[str, Any]], prefix: str | None) -> list[tuple[JobRequest | None, _Item]]:
    """Every item in one call (the common case); one by one, naming each item's errors, if any fails."""
    try:
        requests = _ITEMS.validate_python(jobs)
    except ValidationError:
        return [_validate(i, raw, prefix) for i, raw in enumerate(jobs)]
    return [(_keyed(request, i, prefix), _Item(i)) for i, request in enumerate(requests)]


def _keyed(request: JobRequest, index: int, prefix: str | None) -> JobRequest:
    if request.idempotencyKey is None and prefix is not None:
        return request.model_copy(update={"idempotencyKey": f"{prefix}/{index}"})
    return request


def _validate(index: int, raw: dict[str, Any], prefix: str | None) -> tuple[JobRequest | None, _Item]:
    try:
        request = JobRequest.model_validate(raw)
    except ValidationError as exc:
        error = ErrorDetail(
            code="validation_error",
            message="item does not match the schema",
            fields=field_errors(exc, prefix=("jobs", index)),
        )
        return None, _Item(index, BatchItemResult(index=index, status=422, error=error))
    return _keyed(request, index, prefix), _Item(index)


def _fail(item: _Item, error: ApiError) -> None:
    item.result = BatchItemResult(
        index=item.index, status=error.status, error=error.detail, jobId=item.job.job_id if item.job else None
    )
    item.job = None


def _admit(
    ingress: Ingress, tenant: Tenant, item: _Item, request: JobRequest, seen: dict[str, str], now: datetime
) -> None:
    try:
        job = ingress.prepare(tenant, request, request.idempotencyKey, now=now)
    except ApiError as error:
        _fail(item, error)
        return
    item.job = job
    known = ingress.recent.get(job.job_id)
    earlier = seen.get(job.job_id) or (
        known.payload_hash if known and known.tenant_id == tenant.tenant_id else None
    )
    if earlier is not None:
        if earlier != job.payload_hash:
            _fail(item, ApiError(409, "idempotency_conflict", "key already used with a different payload"))
        else:
            item.result = BatchItemResult(index=item.index, status=200, jobId=job.job_id, duplicate=True)
            item.job = None
        return
    seen[job.job_id] = job.payload_hash
    refusal = ingress.shed(job.spec.priority)
    if refusal is not None:
        _fail(item, refusal)


async def _publish(ingress: Ingress, tenant: Tenant, items: list[_Item]) -> None:
    jobs = [item for item in items if item.job is not None]
    offloads = [(i.job.spec.payload_ref, i.job.offload) for i in jobs if i.job and i.job.offload]
    for url, data in offloads:
        await run_in_threadpool(write_bytes, url, data)  # type: ignore[arg-type]
    assert ingress.publisher is not None, "the lifespan attaches the publisher"
    outcomes = await ingress.publisher.publish_many_async(
        [(i.job.command(), i.job.job_id) for i in jobs if i.job], timeout_s=ingress.produce_timeout_s
    )
    stored = []
    for item, outcome in zip(jobs, outcomes, strict=True):
        assert item.job is not None
        if isinstance(outcome, BaseException):
            _fail(item, ApiError(503, "broker_unavailable", f"the job could not be stored: {outcome}"))
        else:
            stored.append(item.job)
            item.result = BatchItemResult(index=item.index, status=202, jobId=item.job.job_id)
    ingress.remember_many(tenant, stored)


async def submit_batch(request: Request, ingress: Ingress) -> Response:
    """Validate, admit and publish every item; 503 only when every item was shed."""
    tenant = tenant_of(request.scope)
    batch = parse_body(await request.body(), BatchRequest)
    prefix = request.headers.get("idempotency-key") or None
    validated = _validate_all(batch.jobs, prefix)
    charge_jobs(ingress, request, sum(1 for req, _ in validated if req is not None))
    seen: dict[str, str] = {}
    now = datetime.now(UTC)  # one arrival time for the whole batch
    for job_request, item in validated:
        if job_request is not None:
            _admit(ingress, tenant, item, job_request, seen, now)
    items = [item for _, item in validated]
    await _publish(ingress, tenant, items)
    results = [item.result for item in items if item.result is not None]
    assert len(results) == len(items), "every item is answered"
    base = status_url(request, "")
    for result in results:
        if result.jobId is not None and result.status in (200, 202):
            result.statusUrl = base + result.jobId
    accepted = sum(1 for r in results if r.status in (200, 202))
    answer = BatchAccepted(accepted=accepted, rejected=len(results) - accepted, results=results)
    shed = [r for r in results if r.status == 503]
    if shed and len(shed) == len(results):
        return Response(
            answer.model_dump_json(exclude_none=True),
            status_code=503,
            media_type="application/json",
            headers={"Retry-After": "5"},
        )
    return Response(answer.model_dump_json(exclude_none=True), status_code=200, media_type="application/json")
