"""``POST /v1/jobs:batch``: many jobs in one request, each validated and answered on its own.

Items are published together (the producer batches them) and the request waits for every
ack at once, which is what makes a batch far cheaper per job than single submissions. An
``Idempotency-Key`` header on the batch gives item ``i`` the key ``<header>/<i>`` unless the
item has its own, so retrying a whole batch is safe. Each item goes through the same
admission as a single submission (``Ingress.admit``: single-flight per job id, this process's
recent jobs, then the read model for keyed items, shedding), so a repeat or a conflict gets
the same answer either way.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import TypeAdapter, ValidationError
from pydantic_core import to_json
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from ingress.admission import offload
from ingress.commands import PreparedJob, field_errors
from ingress.errors import ApiError
from ingress.http import charge_jobs, parse_body, status_url
from ingress.middleware import tenant_of
from ingress.models import BatchItemResult, BatchRequest, ErrorDetail, JobRequest
from ingress.service import Ingress
from ingress.tenants import Tenant

# Validating the whole list in one call is ~2x cheaper per item than one call per item.
_ITEMS: TypeAdapter[list[JobRequest]] = TypeAdapter(list[JobRequest])


@dataclass(slots=True)
class _Item:
    """One item of the batch and, once ``status`` is set, its answer."""

    index: int
    job: PreparedJob | None = None
    repeat: bool = False  # a repeat known by its durable claim: published again, answered 200
    status: int = 0  # 0 until the item is answered
    job_id: str | None = None
    duplicate: bool = False
    error: ErrorDetail | None = None
    # An earlier item of the same request with the same job: this one is answered as that
    # one's publish turns out, once it is known (a 200 before it would promise a job the
    # log may never hold).
    follows: _Item | None = None

    def answer(self, status: int, job_id: str | None, *, duplicate: bool = False) -> None:
        """Answer the item without an error."""
        self.status, self.job_id, self.duplicate = status, job_id, duplicate


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
        return None, _Item(index, status=422, error=error)
    return _keyed(request, index, prefix), _Item(index)


def _fail(item: _Item, error: ApiError) -> None:
    item.answer(error.status, item.job.job_id if item.job else None)
    item.error, item.job = error.detail, None


def _prepare(ingress: Ingress, tenant: Tenant, item: _Item, request: JobRequest, now: datetime) -> None:
    try:
        item.job = ingress.prepare(tenant, request, request.idempotencyKey, now=now)
    except ApiError as error:
        _fail(item, error)


async def _admit(ingress: Ingress, tenant: Tenant, items: list[_Item]) -> None:
    """``Ingress.admit`` for each prepared item, in order; a later repeat sees the earlier item."""
    seen: dict[str, str] = {}
    first: dict[str, _Item] = {}  # job id -> the item of this request that publishes it
    for item in items:
        if item.job is None:
            continue
        try:
            repeat = await ingress.admit(tenant, item.job, batch=seen)
        except ApiError as error:
            _fail(item, error)
            continue
        if repeat is not None and not repeat.publish:
            # A repeat of an earlier item waits for that item's publish; any other repeat
            # is of a job already stored.
            item.follows = first.get(repeat.job_id)
            if item.follows is None:
                item.answer(200, repeat.job_id, duplicate=True)
            item.job = None
        else:
            item.repeat = repeat is not None
            seen[item.job.job_id] = item.job.payload_hash
            first[item.job.job_id] = item


async def _offload(ingress: Ingress, tenant: Tenant, item: _Item) -> None:
    assert item.job is not None and item.job.offload is not None
    try:
        await run_in_threadpool(ingress.quota.reserve, tenant.tenant_id, len(item.job.offload))
    except ApiError as error:  # this item passes the tenant's quota; the others go on
        _fail(item, error)
        return
    await run_in_threadpool(offload, item.job)


async def _publish(ingress: Ingress, tenant: Tenant, items: list[_Item]) -> None:
    for item in items:
        if item.job is not None and item.job.offload is not None:
            await _offload(ingress, tenant, item)
    jobs = [item for item in items if item.job is not None]
    assert ingress.bulk_publisher is not None, "the lifespan attaches the publishers"
    outcomes = await ingress.bulk_publisher.publish_many_async(
        [(i.job.command(), i.job.job_id) for i in jobs if i.job], timeout_s=ingress.produce_timeout_s
    )
    stored = []
    for item, outcome in zip(jobs, outcomes, strict=True):
        assert item.job is not None
        if isinstance(outcome, BaseException):
            _fail(item, ApiError(503, "broker_unavailable", f"the job could not be stored: {outcome}"))
        else:
            stored.append(item.job)
            item.answer(200 if item.repeat else 202, item.job.job_id, duplicate=item.repeat)
    ingress.remember(tenant, stored)
    for item in items:
        if item.follows is not None:
            _answer_as(item, item.follows)


def _answer_as(item: _Item, first: _Item) -> None:
    """Answer a repeat within the request as its first copy fared: a duplicate of a stored
    job, or the same error when the first copy was not stored."""
    if first.error is None and first.status in (200, 202):
        item.answer(200, first.job_id, duplicate=True)
    else:
        item.answer(first.status, first.job_id)
        item.error = first.error


async def _admit_and_publish(ingress: Ingress, tenant: Tenant, items: list[_Item]) -> None:
    """Hold every item's single-flight lock while admitting and publishing, as a single job does."""
    async with ingress.flights.hold_all(item.job.job_id for item in items if item.job is not None):
        await _admit(ingress, tenant, items)
        await _publish(ingress, tenant, items)


async def submit_batch(request: Request, ingress: Ingress) -> Response:
    """Validate, admit and publish every item; 503 only when every item was shed."""
    tenant = tenant_of(request.scope)
    batch = parse_body(await request.body(), BatchRequest)
    prefix = request.headers.get("idempotency-key") or None
    validated = _validate_all(batch.jobs, prefix)
    charge_jobs(ingress, request, sum(1 for req, _ in validated if req is not None))
    now = datetime.now(UTC)  # one arrival time for the whole batch
    for job_request, item in validated:
        if job_request is not None:
            _prepare(ingress, tenant, item, job_request, now)
    items = [item for _, item in validated]
    await _admit_and_publish(ingress, tenant, items)
    assert all(item.status for item in items), "every item is answered"
    body = answer_json(items, status_url(request, ""))
    if all(item.status == 503 for item in items):  # every item shed
        return Response(body, status_code=503, media_type="application/json", headers={"Retry-After": "5"})
    return Response(body, status_code=200, media_type="application/json")


def answer_json(items: list[_Item], base: str) -> str:
    """``BatchAccepted`` as ``model_dump_json(exclude_none=True)`` writes it, items in order.

    An accepted item is written directly: building and serialising a ``BatchItemResult``
    per job cost ~6 % of the batch's CPU. Its only strings are the job id (a UUID, never
    escaped) and the status URL, whose base is escaped once by pydantic itself. Items with
    an error go through the model. ``tests/ingress/test_batch.py`` compares both writings.
    """
    url = to_json(base).decode()[:-1]  # the JSON string of the base, without its closing quote
    parts = []
    accepted = 0
    for item in items:
        if item.error is None and item.status in (200, 202) and item.job_id is not None:
            accepted += 1
            duplicate = "true" if item.duplicate else "false"
            parts.append(
                f'{{"index":{item.index},"status":{item.status},"jobId":"{item.job_id}",'
                f'"statusUrl":{url}{item.job_id}","duplicate":{duplicate}}}'
            )
        else:
            accepted += item.status in (200, 202)
            parts.append(_result(item, base).model_dump_json(exclude_none=True))
    return f'{{"accepted":{accepted},"rejected":{len(items) - accepted},"results":[{",".join(parts)}]}}'


def _result(item: _Item, base: str) -> BatchItemResult:
    """The item's answer as the model the API documents."""
    url = base + item.job_id if item.job_id is not None and item.status in (200, 202) else None
    return BatchItemResult(
        index=item.index, status=item.status, jobId=item.job_id, statusUrl=url, duplicate=item.duplicate,
        error=item.error,
    )
