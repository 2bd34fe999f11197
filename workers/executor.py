"""Running one closed batch: skip check, breaker, rate-limit pause, model call, results.

``PoolExecutor.execute`` turns a batch of ``WorkItem`` into one final ``WorkOutcome`` per
item (``succeeded``, ``failed`` or ``skipped``), publishing ``started`` first for the items
of a model call that outlasts the pool's announce window (a shorter call's final outcomes
carry the start themselves) and every final outcome before it returns, so the caller may ack the
batch's Kafka messages as soon as it gets control back. It knows nothing about Faust: the
publisher and the job-state lookup are injected, which is how tests drive it against the
emulator without a broker.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any, Protocol

from brigade.errors import ModelError, Permanent, RateLimited, Transient
from brigade.ids import event_id
from brigade.settings import PoolSettings
from brigade.status import ErrorClass
from schemas.records import OutcomeKind, WorkItem, WorkOutcome
from workers.breaker import CircuitBreaker, CircuitRecord, Transition, circuit_record
from workers.jobstate import JobView, skip_reason
from workers.metrics import WorkerMetrics
from workers.models.types import InferenceRequest, InferenceResult, ModelClient
from workers.postprocess import Pipeline
from workers.results import ResultStore, result_text

_BATCH_NAMESPACE = uuid.UUID("0f8e5c1a-7d43-5b2e-9a61-3c4d5e6f7a8b")
_REMEMBERED = 50_000


class Publisher(Protocol):
    """Where outcomes and circuit events go; each call returns once the record is durable."""

    async def outcome(self, outcome: WorkOutcome) -> None:
        """Publish to ``brigade.outcomes`` keyed by job id."""
        ...

    async def circuit(self, record: CircuitRecord, *, key: str) -> None:
        """Publish to ``brigade.job-events`` keyed ``circuit:<pool>:<model>``."""
        ...


Lookup = Callable[[str], JobView | None]


def error_class(error: BaseException) -> ErrorClass:
    """The outcome's ``error_class`` for a model error."""
    if isinstance(error, RateLimited):
        return ErrorClass.RATE_LIMITED
    if isinstance(error, Permanent):
        return ErrorClass.PERMANENT
    return ErrorClass.TRANSIENT


def batch_id(items: Sequence[WorkItem]) -> str:
    """Deterministic id of a batch: the same attempts always form the same id."""
    members = sorted(f"{i.spec.job_id}:{i.attempt}" for i in items)
    return str(uuid.uuid5(_BATCH_NAMESPACE, ",".join(members)))


@dataclass(frozen=True, kw_only=True)
class _Call:
    """The items that reach the model in one call, with their parsed inputs."""

    indexes: list[int]
    requests: list[InferenceRequest]
    batch_id: str


class PoolExecutor:
    """Executes batches of one pool against its model endpoint."""

    def __init__(
        self,
        *,
        name: str,
        pool: PoolSettings,
        client: ModelClient,
        publisher: Publisher,
        lookup: Lookup,
        results: ResultStore,
        pipeline: Pipeline,
        metrics: WorkerMetrics,
        worker_id: str,
        breaker: CircuitBreaker | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self.pool = pool
        self.client = client
        self.publisher = publisher
        self.lookup = lookup
        self.results = results
        self.pipeline = pipeline
        self.metrics = metrics
        self.worker_id = worker_id
        self.breaker = breaker or CircuitBreaker(
            failure_threshold=pool.breaker_failures, reset_timeout_s=pool.breaker_reset_s, clock=clock
        )
        self._clock = clock
        self.paused_until = 0.0
        self.model_calls = 0
        # Attempts this process already reported: a redelivery within this process's life
        # (rebalance back and forth) is skipped even before the event log catches up.
        self._reported: OrderedDict[tuple[str, int], None] = OrderedDict()
        metrics.set_circuit(name, pool.model, self.breaker.state)

    async def execute(self, items: Sequence[WorkItem], *, lane: str) -> list[WorkOutcome]:
        """Run ``items`` as one batch; return (and publish) one final outcome per item, in order."""
        final: dict[int, WorkOutcome] = {}
        runnable: list[int] = []
        for index, item in enumerate(items):
            reason = self._skip_reason(item)
            if reason is None:
                runnable.append(index)
            else:
                final[index] = self._outcome(item, "skipped", error=reason)
        if runnable:
            final.update(await self._run(items, runnable, lane))
        outcomes = [final[i] for i in range(len(items))]
        await asyncio.gather(*(self.publisher.outcome(o) for o in outcomes))
        for outcome in outcomes:
            self._count(outcome, lane)
        return outcomes

    def _skip_reason(self, item: WorkItem) -> str | None:
        if (item.spec.job_id, item.attempt) in self._reported:
            return f"attempt {item.attempt} already reported by this worker"
        return skip_reason(self.lookup(item.spec.job_id), item)

    async def _run(self, items: Sequence[WorkItem], runnable: list[int], lane: str) -> dict[int, WorkOutcome]:
        final, call = await self._prepare(items, runnable)
        if not call.indexes:
            return final
        admission = self.breaker.admit()
        await self._transition(admission.transition)
        if not admission.allowed:
            final.update(self._circuit_open(items, call.indexes, lane, admission.retry_in))
            return final
        await self._wait_for_rate_limit()
        began = datetime.now(UTC)
        calling = asyncio.ensure_future(self._call(items, call, admission.ticket, lane))
        try:
            answered, announced = await self._answer_or_announce(items, call, calling)
        except BaseException:
            calling.cancel()
            raise
        if not announced:
            # The call ended within the announce window: each final outcome reports its
            # attempt's start itself, and the processor records JobStarted at ``began``.
            answered = {i: replace(o, batch_id=call.batch_id, lease_ms=items[i].lease_ms,
                                   started_at=began) for i, o in answered.items()}
        final.update(answered)
        return final

    async def _answer_or_announce(
        self, items: Sequence[WorkItem], call: _Call, calling: asyncio.Future[dict[int, WorkOutcome]]
    ) -> tuple[dict[int, WorkOutcome], bool]:
        """The call's outcomes, and whether the batch's `started` outcomes were published
        (durably) because the call outlasted the pool's announce window."""
        window_s = self.pool.announce_start_after_ms / 1000.0
        if window_s > 0:
            await asyncio.wait((calling,), timeout=window_s)
            if calling.done():
                return calling.result(), False
        # The rest of the call overlaps the wait for the `started` acks; the final outcomes
        # are published only after those acks, so a job's `started` is durable before its
        # `succeeded` or `failed` is even sent. A `started` that fails to publish fails the
        # batch: nothing final is reported and the unacked work is redelivered (the model
        # call is then repeated, as after a crash).
        started = [self._started(items[i], call.batch_id) for i in call.indexes]
        publishing = asyncio.gather(*(self.publisher.outcome(o) for o in started))
        try:
            await asyncio.wait((calling,))
        finally:
            await publishing
        return calling.result(), True

    async def _prepare(
        self, items: Sequence[WorkItem], runnable: list[int]
    ) -> tuple[dict[int, WorkOutcome], _Call]:
        final: dict[int, WorkOutcome] = {}
        indexes: list[int] = []
        requests: list[InferenceRequest] = []
        for index in runnable:
            item = items[index]
            try:
                value = await _input_of(item, self.results)
            except Exception as exc:  # noqa: BLE001 - one bad item fails itself, not its batch
                final[index] = self._failed(item, _as_model_error(exc, "preparing the input"))
                continue
            indexes.append(index)
            requests.append(InferenceRequest(job_id=item.spec.job_id, input=value, model=item.model))
        members = [items[i] for i in indexes]
        return final, _Call(indexes=indexes, requests=requests, batch_id=batch_id(members))

    async def _call(
        self, items: Sequence[WorkItem], call: _Call, ticket: int, lane: str
    ) -> dict[int, WorkOutcome]:
        started = self._clock()
        self.model_calls += 1
        try:
            answers = await self._infer(call.requests)
        except ModelError as exc:
            await self._record(ticket, exc)
            return {i: self._failed(items[i], exc) for i in call.indexes}
        except Exception as exc:  # noqa: BLE001 - a client bug must fail the batch, not the lane
            error = Transient(f"model client raised {type(exc).__name__}: {exc}")
            await self._record(ticket, error)
            return {i: self._failed(items[i], error) for i in call.indexes}
        await self._record(ticket, None)
        latency_ms = (self._clock() - started) * 1000.0
        self.metrics.model_latency.labels(self.name, lane).observe(latency_ms / 1000.0)
        self.metrics.batch_size.labels(self.name, lane).observe(len(call.requests))
        answers = _checked(call.requests, answers)
        size = len(call.requests)
        pairs = zip(call.indexes, answers, strict=True)
        finished = await asyncio.gather(*(self._finish(items[i], a, latency_ms, size) for i, a in pairs))
        return dict(zip(call.indexes, finished, strict=True))

    async def _infer(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult | ModelError]:
        try:
            return list(await self.client.infer(requests))
        except Permanent:
            # A 4xx for a batched call may be one bad item's fault: split until it is alone.
            if len(requests) == 1:
                raise
        self.metrics.batch_splits.labels(self.name).inc()
        middle = len(requests) // 2
        return [*await self._infer_part(requests[:middle]), *await self._infer_part(requests[middle:])]

    async def _infer_part(self, requests: Sequence[InferenceRequest]) -> list[InferenceResult | ModelError]:
        # After a split each half answers for itself: an error fails only that half's items.
        try:
            return await self._infer(requests)
        except ModelError as exc:
            if isinstance(exc, RateLimited):
                self._pause(exc)
            return [exc] * len(requests)

    async def _finish(
        self, item: WorkItem, answer: InferenceResult | ModelError, latency_ms: float, size: int
    ) -> WorkOutcome:
        if isinstance(answer, ModelError):
            return self._failed(item, answer)
        view = self.lookup(item.spec.job_id)
        if view is not None and (view.cancel_requested or view.status == "cancelled"):
            return self._outcome(
                item, "failed", error_class=ErrorClass.CANCELLED, error="cancelled while running"
            )
        try:
            text = result_text(self.pipeline.run(answer.output))
            stored = await self.results.put(item.spec.job_id, text)
        except Exception as exc:  # noqa: BLE001 - one item's result fails itself, not its batch
            return self._failed(item, _as_model_error(exc, "storing the result"))
        return self._outcome(
            item, "succeeded", model=answer.model or item.model, latency_ms=latency_ms, batch_size=size,
            result_inline=stored.inline, result_ref=stored.ref, result_size=stored.size,
            result_sha256=stored.sha256,
        )

    async def _record(self, ticket: int, error: ModelError | None) -> None:
        if isinstance(error, RateLimited):
            self._pause(error)
        await self._transition(self.breaker.record(ticket, error))

    def _pause(self, error: RateLimited) -> None:
        self.metrics.rate_limited.labels(self.name).inc()
        delay = error.retry_after if error.retry_after is not None else 1.0
        if delay > self.pool.retry_after_cap_s:
            self.metrics.retry_after_capped.labels(self.name).inc()
            delay = self.pool.retry_after_cap_s
        self.paused_until = max(self.paused_until, self._clock() + delay)

    async def _wait_for_rate_limit(self) -> None:
        # Respect Retry-After for the whole pool: every batch waits until the pause ends
        # (re-checked after the sleep, since another 429 may have extended it meanwhile).
        delay = self.paused_until - self._clock()
        while delay > 0:
            await asyncio.sleep(delay)
            delay = self.paused_until - self._clock()

    async def _transition(self, transition: Transition | None) -> None:
        if transition is None:
            return
        self.metrics.set_circuit(self.name, self.pool.model, transition.state)
        record = circuit_record(transition, pool=self.name, model=self.pool.model, worker=self.worker_id)
        await self.publisher.circuit(record, key=f"circuit:{self.name}:{self.pool.model}")

    def _circuit_open(
        self, items: Sequence[WorkItem], indexes: list[int], lane: str, retry_in: float
    ) -> dict[int, WorkOutcome]:
        if lane == "interactive" and self.pool.fallback is not None:
            message = f"circuit open for {self.name}/{self.pool.model}; fallback pool {self.pool.fallback}"
        else:
            message = f"circuit open for {self.name}/{self.pool.model}; delay through the retry tiers"
        retry_ms = max(1, int(retry_in * 1000))
        fields = {"error_class": ErrorClass.CIRCUIT_OPEN, "error": message, "retry_after_ms": retry_ms}
        return {i: self._outcome(items[i], "failed", **fields) for i in indexes}

    def _failed(self, item: WorkItem, error: ModelError) -> WorkOutcome:
        retry_ms = None
        if isinstance(error, RateLimited) and error.retry_after is not None:
            retry_ms = int(error.retry_after * 1000)
        return self._outcome(
            item, "failed", error_class=error_class(error), error=str(error) or type(error).__name__,
            retry_after_ms=retry_ms,
        )

    def _started(self, item: WorkItem, batch: str) -> WorkOutcome:
        return self._outcome(item, "started", batch_id=batch, lease_ms=item.lease_ms, model=item.model)

    def _outcome(self, item: WorkItem, kind: OutcomeKind, **fields: Any) -> WorkOutcome:
        job = item.spec.job_id
        return WorkOutcome(
            outcome_id=event_id(job, "outcome:" + kind, item.attempt),
            job_id=job,
            tenant_id=item.spec.tenant_id,
            attempt=item.attempt,
            kind=kind,
            occurred_at=datetime.now(UTC),
            worker=self.worker_id,
            **fields,
        )

    def _count(self, outcome: WorkOutcome, lane: str) -> None:
        self.metrics.outcomes.labels(self.name, lane, outcome.kind, outcome.error_class or "").inc()
        if outcome.kind != "skipped":
            self._reported[(outcome.job_id, outcome.attempt)] = None
            while len(self._reported) > _REMEMBERED:
                self._reported.popitem(last=False)


def _as_model_error(exc: Exception, doing: str) -> ModelError:
    """A foreign exception while handling one item: I/O may pass, anything else will not."""
    if isinstance(exc, ModelError):
        return exc
    message = f"{doing} failed: {type(exc).__name__}: {exc}"
    return Transient(message) if isinstance(exc, OSError) else Permanent(message)


async def _input_of(item: WorkItem, results: ResultStore) -> Any:
    spec = item.spec
    text: str | bytes
    if spec.input is not None:
        text = spec.input
    elif spec.payload_ref is not None:
        text = await results.load_payload(spec.payload_ref, tenant_id=spec.tenant_id)
    else:
        raise Permanent(f"job {spec.job_id} has neither inline input nor a payload reference")
    try:
        return json.loads(text)
    except ValueError as exc:  # also bytes that are not UTF-8
        raise Permanent(f"job {spec.job_id} input is not JSON: {exc}") from exc


def _checked(
    requests: Sequence[InferenceRequest], answers: Sequence[InferenceResult | ModelError]
) -> list[InferenceResult | ModelError]:
    """Refuse to attribute an answer to the wrong job: a mismatch fails the slot, transiently."""
    if len(answers) != len(requests):
        error = Transient(f"model client returned {len(answers)} answers for {len(requests)} requests")
        return [error] * len(requests)
    checked: list[InferenceResult | ModelError] = []
    for request, answer in zip(requests, answers, strict=True):
        if isinstance(answer, InferenceResult) and answer.job_id != request.job_id:
            answer = Transient(f"answer for job {answer.job_id} arrived in the slot of job {request.job_id}")
        checked.append(answer)
    return checked
