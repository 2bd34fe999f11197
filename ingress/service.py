"""What the routes call: submission with idempotency and shedding, and tenant-scoped reads.

Routes stay thin (parse, call, shape the answer); the rules live here.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from starlette.concurrency import run_in_threadpool

from brigade.errors import KafkaError
from brigade.kafka.topology import Topology
from brigade.objectstore import object_exists, read_bytes
from brigade.settings import Settings
from brigade.status import TERMINAL
from ingress.admission import CONFLICT_MESSAGE, IdempotencyConflict, Ledger, is_repeat, offload
from ingress.backpressure import LagMonitor
from ingress.claims import Claim, ClaimError, ClaimStore
from ingress.commands import JobValidationError, PreparedJob, cancel_command, prepare
from ingress.errors import ApiError, not_found
from ingress.idempotency import SingleFlight
from ingress.metrics import ApiMetrics
from ingress.models import FieldError, JobRequest
from ingress.producer import CommandPublisher
from ingress.quota import PayloadQuota
from ingress.ratelimit import RateLimiter
from ingress.readiness import Readiness
from ingress.tenants import Tenant
from ingress.waiters import EventTail, WaitRegistry
from projections.readmodel import JobEventView, JobStatus, ReadModel
from projections.statuscache import StatusCache

_SHED_RETRY_AFTER = {"soft": "5", "hard": "10"}
_FALLBACK_POLL_S = 1.0


@dataclass(frozen=True, slots=True, kw_only=True)
class Submitted:
    """The outcome of one accepted (or recognised) submission."""

    job_id: str
    status: str
    duplicate: bool
    publish: bool = False  # a repeat known only by its durable claim: publish it again


def validation_error(exc: JobValidationError) -> ApiError:
    """422 naming the fields."""
    return ApiError(422, "validation_error", str(exc), fields=exc.fields)


def conflict(job_id: str) -> ApiError:
    """409: the key was already used with another payload."""
    return ApiError(409, "idempotency_conflict", CONFLICT_MESSAGE, job_id=job_id)


def claim_outcome(job: PreparedJob, claim: Claim | ClaimError) -> bool:
    """True for a standing claim with this payload; raises 409 for another payload, 503 on failure."""
    if isinstance(claim, ClaimError):
        raise ApiError(503, "store_unavailable", str(claim), headers={"Retry-After": "5"}) from claim
    if claim.payload_hash != job.payload_hash:
        raise conflict(job.job_id)
    return not claim.created


def missing_payload(ref: str) -> ApiError:
    """422: a well-formed payloadRef whose object this API never stored."""
    message = "no payload stored at this payloadRef; upload it with POST /v1/payloads first"
    field = FieldError(loc=["payloadRef"], field="payloadRef", msg=message, type="payload_missing")
    return ApiError(422, "validation_error", f"payloadRef {ref!r}: {message}", fields=[field])


async def check_stored(job: PreparedJob) -> ApiError | None:
    """A 422 when the job names a stored payload that does not exist (the ref's form is already checked)."""
    ref = job.spec.payload_ref
    if ref is None or job.offload is not None:
        return None
    return None if await run_in_threadpool(object_exists, ref) else missing_payload(ref)


class Ingress:
    """The API's state and rules; resources are attached by the app's lifespan."""

    def __init__(self, *, settings: Settings, metrics: ApiMetrics, read_model: ReadModel | None) -> None:
        self.settings = settings
        self.metrics = metrics
        self.read_model = read_model
        self.publisher: CommandPublisher | None = None  # single jobs and cancels
        self.bulk_publisher: CommandPublisher | None = None  # items of batch requests
        self.lag: LagMonitor | None = None
        self.limiter = RateLimiter()
        self.ledger = Ledger()
        self.flights = SingleFlight()
        self.quota = PayloadQuota(settings)
        self.claims = ClaimStore(settings.object_store_url)
        self.waits = WaitRegistry(per_tenant=settings.api.max_waits_per_tenant, total=settings.api.max_waits)
        self.tail: EventTail | None = None
        self.readiness: Readiness | None = None
        self.statuses: StatusCache | None = None  # set when this process runs the projector
        self._from_memory = metrics.status_reads.labels("memory")
        self._from_clickhouse = metrics.status_reads.labels("clickhouse")
        self.produce_timeout_s = 15.0

    def required_topics(self) -> list[str]:
        """Topics the API needs: it writes commands, the projector reads job events."""
        topology = Topology(self.settings)
        return [topology.commands, topology.job_events]

    # ---- submission -------------------------------------------------------------------

    def prepare(
        self, tenant: Tenant, request: JobRequest, key: str | None, *, now: datetime | None = None
    ) -> PreparedJob:
        """Validate against deployment limits and build the job (raises 422)."""
        try:
            return prepare(
                request,
                settings=self.settings,
                tenant_id=tenant.tenant_id,
                idempotency_key=key,
                allow_private_callbacks=tenant.allow_private_callbacks,
                now=now,
            )
        except JobValidationError as exc:
            raise validation_error(exc) from exc

    def shed(self, priority: str) -> ApiError | None:
        """A 503 when the processor's backlog says this priority must wait."""
        level = self.lag.level() if self.lag is not None else "ok"
        if level == "ok" or (level == "soft" and priority == "interactive"):
            return None
        self.metrics.shed.labels(priority, level).inc()
        return ApiError(
            503,
            "overloaded",
            f"the job backlog is over its {level} limit; retry later",
            headers={"Retry-After": _SHED_RETRY_AFTER[level]},
        )

    async def submit(self, tenant: Tenant, job: PreparedJob, *, consult_read_model: bool = True) -> Submitted:
        """Publish ``job`` once; a repeat answers the existing job, a changed payload 409s."""
        async with self.flights.hold(job.job_id):
            repeat = await self.admit(tenant, job, consult_read_model=consult_read_model)
            if repeat is not None and not repeat.publish:
                return repeat
            await self.publish(tenant, job)
            return repeat or Submitted(job_id=job.job_id, status="queued", duplicate=False)

    async def claim(self, tenant: Tenant, job: PreparedJob) -> bool:
        """Claim a keyed job durably before it is accepted; True when the claim already stood.

        A standing claim with the same payload is a repeat: the job is published again
        (the processor drops the duplicate command), which also covers a process that
        claimed and died before its produce. Another payload under the key is a 409.

        Raises:
            ApiError: 409 idempotency_conflict, or 503 when the claim store fails.
        """
        if job.spec.idempotency_key is None:
            return False
        pair = [(job.job_id, job.payload_hash)]
        (claim,) = await run_in_threadpool(self.claims.claim_many, tenant.tenant_id, pair)
        return claim_outcome(job, claim)

    async def admit(
        self,
        tenant: Tenant,
        job: PreparedJob,
        *,
        consult_read_model: bool = True,
        batch: Mapping[str, str] | None = None,
    ) -> Submitted | None:
        """The admission rules, under the caller's single-flight hold of ``job.job_id``.

        Returns the answer for a repeat, or None when ``job`` is new and may be published;
        ``batch`` maps job ids earlier in the same request to their payload hashes. A keyed
        job is claimed durably here (:mod:`ingress.claims`); a repeat known only by its claim
        comes back with ``publish`` set: the caller publishes it again (see :meth:`claim`).

        Raises:
            ApiError: 409 for a key reused with another payload (on any API process), 503 when
                shed, 422 for a payloadRef with no stored object.
        """
        known = await self._known_hash(tenant, job, consult_read_model, batch)
        try:
            repeat = is_repeat(job, known[0] if known else None)
        except IdempotencyConflict as exc:
            raise ApiError(409, "idempotency_conflict", CONFLICT_MESSAGE, job_id=job.job_id) from exc
        if repeat and known is not None:
            self.metrics.duplicates.labels(tenant.tenant_id).inc()
            return Submitted(job_id=job.job_id, status=known[1], duplicate=True)
        refusal = self.shed(job.spec.priority) or await check_stored(job)
        if refusal is not None:
            raise refusal
        if await self.claim(tenant, job):
            self.metrics.duplicates.labels(tenant.tenant_id).inc()
            return Submitted(job_id=job.job_id, status="queued", duplicate=True, publish=True)
        return None

    async def _known_hash(
        self, tenant: Tenant, job: PreparedJob, consult: bool, batch: Mapping[str, str] | None
    ) -> tuple[str, str] | None:
        recent = self.ledger.known(tenant.tenant_id, job.job_id, batch=batch)
        if recent is not None:
            return recent, "queued"
        # Without a key the id is the payload hash, so an older job cannot conflict: the
        # processor dedupes it, and the read model need not be asked.
        if not consult or self.read_model is None or job.spec.idempotency_key is None:
            return None
        status = await self.job_status(tenant.tenant_id, job.job_id)
        if status is None:
            return None
        return await self._projected_hash(tenant.tenant_id, job) or job.payload_hash, status.status

    async def _projected_hash(self, tenant_id: str, job: PreparedJob) -> str | None:
        for event in await self.events(tenant_id, job.job_id):
            found = _find_hash(event.detail)
            if found is not None:
                return found
        return None

    async def publish(self, tenant: Tenant, job: PreparedJob) -> None:
        """Offload an oversize input (within the tenant's quota), produce the command, wait for the ack."""
        assert self.publisher is not None, "the lifespan attaches the publisher"
        if job.offload is not None:
            await run_in_threadpool(self.quota.reserve, tenant.tenant_id, len(job.offload))
            await run_in_threadpool(offload, job)
        started = time.perf_counter()
        try:
            await self.publisher.publish_async(
                job.command(), key=job.job_id, timeout_s=self.produce_timeout_s
            )
        except KafkaError as exc:
            raise ApiError(
                503, "broker_unavailable", f"the job could not be stored: {exc}", headers={"Retry-After": "5"}
            ) from exc
        self.metrics.produce_seconds.observe(time.perf_counter() - started)
        self.remember(tenant, [job])

    def remember(self, tenant: Tenant, jobs: list[PreparedJob]) -> None:
        """Record accepted jobs (idempotency, read-your-writes); the metric moves once per priority."""
        for priority, count in self.ledger.remember(tenant.tenant_id, jobs).items():
            self.metrics.accepted.labels(tenant.tenant_id, priority).inc(count)

    # ---- reads ------------------------------------------------------------------------

    async def job_status(self, tenant_id: str, job_id: str, *, with_result: bool = True) -> JobStatus | None:
        """The projected status, else what this process published a moment ago, else None.

        Answered from memory when the embedded projector inserted the job's state and still
        owns its partition (no thread hop, no query), else by the read model. Pass
        ``with_result=False`` where the result is not shown: a large inline result is not
        held in memory, and only reads that need it must go to ClickHouse for it.
        """
        if self.statuses is not None:
            cached = self.statuses.get(tenant_id, job_id, with_result=with_result)
            if cached is not None:
                self._from_memory.inc()
                return cached
        if self.read_model is not None:
            self._from_clickhouse.inc()
            status = await run_in_threadpool(self.read_model.job, tenant_id, job_id)
            if status is not None:
                return status
        return self._just_published(tenant_id, job_id)

    def _just_published(self, tenant_id: str, job_id: str) -> JobStatus | None:
        recent = self.ledger.get(tenant_id, job_id)
        if recent is None:
            return None
        return JobStatus(
            job_id=job_id,
            tenant_id=tenant_id,
            status="queued",
            attempts=0,
            created_at=recent.created_at,
            updated_at=recent.created_at,
            sequence=0,
            priority=recent.priority,
        )

    async def require(self, tenant_id: str, job_id: str, *, with_result: bool = True) -> JobStatus:
        """The job's status, or 404 (``with_result``: see :meth:`job_status`)."""
        status = await self.job_status(tenant_id, job_id, with_result=with_result)
        if status is None:
            raise not_found(job_id)
        return status

    async def events(self, tenant_id: str, job_id: str) -> list[JobEventView]:
        """The job's projected events (empty when not projected yet)."""
        if self.read_model is None:
            return []
        return await run_in_threadpool(self.read_model.events, tenant_id, job_id)

    async def output(self, status: JobStatus) -> Any:
        """The result of a succeeded job, parsed from JSON (inline or from the object store)."""
        if status.result_inline is not None:
            return json.loads(status.result_inline)
        if status.result_ref is not None:
            return json.loads(await run_in_threadpool(read_bytes, status.result_ref))
        return None

    async def wait(self, tenant_id: str, job_id: str, seconds: float) -> JobStatus | None:
        """The job's status once terminal, or as it stands after ``seconds``.

        Woken by the job's terminal event (:mod:`ingress.waiters`): one read-model look-up
        when the wait starts, none while it lasts. Without the event tail (it could not
        start) the read model is asked every ``_FALLBACK_POLL_S``.
        """
        status = await self.job_status(tenant_id, job_id)
        if status is not None and status.status in TERMINAL:
            return status
        if self.tail is None:
            return await self._poll(tenant_id, job_id, seconds, status)
        terminal = await self.waits.wait(job_id, seconds)
        if terminal is None or terminal.tenant_id != tenant_id:
            return status
        return terminal.apply(status, priority=status.priority if status else None)

    async def _poll(
        self, tenant_id: str, job_id: str, seconds: float, status: JobStatus | None
    ) -> JobStatus | None:
        deadline = time.monotonic() + seconds
        while (status is None or status.status not in TERMINAL) and time.monotonic() < deadline:
            await asyncio.sleep(min(_FALLBACK_POLL_S, max(0.0, deadline - time.monotonic())))
            status = await self.job_status(tenant_id, job_id)
        return status

    async def cancel(self, tenant: Tenant, job_id: str, reason: str | None) -> JobStatus:
        """Produce a CancelJob for a known, unfinished job (404 unknown, 409 finished)."""
        status = await self.require(tenant.tenant_id, job_id)
        if status.status in TERMINAL:
            raise ApiError(409, "job_finished", f"job is already {status.status}", job_id=job_id)
        assert self.publisher is not None, "the lifespan attaches the publisher"
        command = cancel_command(tenant_id=tenant.tenant_id, job=job_id, reason=reason, now=datetime.now(UTC))
        try:
            await self.publisher.publish_async(command, key=job_id, timeout_s=self.produce_timeout_s)
        except KafkaError as exc:
            raise ApiError(
                503,
                "broker_unavailable",
                f"the cancellation could not be stored: {exc}",
                headers={"Retry-After": "5"},
            ) from exc
        return status


def _find_hash(detail: dict[str, Any]) -> str | None:
    for key in ("payload_sha256", "payloadSha256"):
        if isinstance(detail.get(key), str):
            return str(detail[key])
    spec = detail.get("spec")
    return _find_hash(spec) if isinstance(spec, dict) else None
