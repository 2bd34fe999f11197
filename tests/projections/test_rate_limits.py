"""A 429 from the model is a rate limit in ``brigade query``: worker → processor → projection.

The real pieces in order: the worker's ``PoolExecutor`` turns the model's ``RateLimited`` into
an outcome, the processor's ``decide`` turns the outcomes into lifecycle events, the
projection writer folds them into ClickHouse, and ``brigade query retries`` reads the count.
The model's message does not mention "429" and carries no Retry-After: the error class alone
must say it was a rate limit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path

from brigade.errors import ModelError, RateLimited
from processors.decisions import Policy, decide
from processors.lifecycle import Job
from projections import reports
from projections.migrations import apply_migrations
from projections.types import ClickHouse
from projections.writer import LogRecord, ProjectionWriter
from schemas.codec import Codec
from schemas.records import LifecycleEvent, WorkItem, WorkOutcome
from testkit.jobs import T0, policy, pools, spec, submit
from workers.breaker import CircuitRecord
from workers.executor import PoolExecutor
from workers.metrics import WorkerMetrics
from workers.models.types import InferenceRequest, InferenceResult
from workers.postprocess import pipeline_for
from workers.results import ResultStore


class QuotaSpent:
    """A model backend whose provider refuses every call with its own wording of a 429."""

    async def infer(self, batch: Sequence[InferenceRequest]) -> list[InferenceResult | ModelError]:
        raise RateLimited("the provider's request quota is spent", retry_after=None)

    async def aclose(self) -> None:
        return None


class Outcomes:
    """The executor's publisher: keeps every outcome for the processor."""

    def __init__(self) -> None:
        self.published: list[WorkOutcome] = []

    async def outcome(self, outcome: WorkOutcome) -> None:
        self.published.append(outcome)

    async def circuit(self, record: CircuitRecord, *, key: str) -> None:
        return None


def _apply(state: Job | None, command: object, rules: Policy, log: list[LifecycleEvent]) -> Job | None:
    decision = decide(state, command, policy=rules, now=T0)  # type: ignore[arg-type]
    log.extend(decision.events)
    return decision.state


async def test_a_429_from_the_model_shows_as_a_rate_limit_in_query(
    clickhouse: ClickHouse, tmp_path: Path
) -> None:
    # Given a job the processor dispatched to a pool whose model answers 429,
    rules = policy()
    job = spec("hello")
    log: list[LifecycleEvent] = []
    state = _apply(None, submit(job), rules, log)
    assert state is not None and state.pool is not None and state.lane is not None
    pool = pools()[state.pool]
    publisher = Outcomes()
    executor = PoolExecutor(
        name=state.pool, pool=pool, client=QuotaSpent(), publisher=publisher, lookup=lambda _: None,
        results=ResultStore(url=f"file://{tmp_path}", inline_threshold=1024), pipeline=pipeline_for(pool),
        metrics=WorkerMetrics(), worker_id="w1",
    )
    item = WorkItem(spec=job, attempt=state.attempt, pool=state.pool, lane=state.lane, model=pool.model,
                    dispatched_at=T0, lease_ms=30_000)
    # when the worker runs it and the processor decides on what the worker reported,
    await executor.execute([item], lane=state.lane)
    for outcome in publisher.published:
        state = _apply(state, replace(outcome, occurred_at=T0), rules, log)
    # and the projection folds those events into ClickHouse,
    apply_migrations(clickhouse)
    codec = Codec()
    ProjectionWriter(clickhouse).write([LogRecord(0, i, codec.encode(e)) for i, e in enumerate(log)])
    # then `brigade query retries` counts one rate-limited attempt.
    until = datetime.now(UTC) + timedelta(hours=1)
    [row] = reports.retry_rates(clickhouse, since=T0 - timedelta(hours=1), until=until).as_dicts()
    assert [type(e).__name__ for e in log][-1] == "JobRetryScheduled"
    assert (row["attempts"], row["retries"], row["rate_limited"]) == (1, 1, 1)
