"""PoolExecutor against the real emulator over HTTP: mapping, 429s, breaker, skips, results."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade.settings import PoolSettings
from schemas.records import JobSpec, WorkItem, WorkOutcome
from workers.breaker import CircuitBreaker, CircuitRecord
from workers.emulator import EmulatorConfig, create_emulator_app, pseudo_embedding
from workers.executor import PoolExecutor
from workers.jobstate import JobView
from workers.metrics import WorkerMetrics
from workers.models import make_client
from workers.postprocess import pipeline_for
from workers.results import ResultStore

from .uvicorn_server import serve


class RecordingPublisher:
    """Collects what the executor publishes."""

    def __init__(self) -> None:
        self.outcomes: list[WorkOutcome] = []
        self.circuits: list[tuple[str, CircuitRecord]] = []

    async def outcome(self, outcome: WorkOutcome) -> None:
        self.outcomes.append(outcome)

    async def circuit(self, record: CircuitRecord, *, key: str) -> None:
        self.circuits.append((key, record))


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def work_item(text: str, *, attempt: int = 1, lane: str = "interactive") -> WorkItem:
    spec = JobSpec(
        job_id=str(uuid.uuid4()), tenant_id="t1", payload_sha256="x", created_at=datetime.now(UTC),
        input=json.dumps(text), priority="interactive" if lane == "interactive" else "batch",
    )
    return WorkItem(spec=spec, attempt=attempt, pool="p", lane=lane, model="emulated-minilm",
                    dispatched_at=datetime.now(UTC), lease_ms=60_000)


@pytest.fixture
def emulator() -> Iterator[str]:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=1, item_latency_ms=0))) as url:
        yield url


def configure(url: str, **changes: Any) -> None:
    assert httpx.post(f"{url}/_emulator/config", json=changes).status_code == 200


def stats(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/_emulator/stats").json()
    return data


class Harness:
    def __init__(self, url: str, tmp_path: Path, *, threshold: int = 64 * 1024, **pool_kw: Any) -> None:
        self.pool = PoolSettings(model="emulated-minilm", endpoint=url, **pool_kw)
        self.publisher = RecordingPublisher()
        self.views: dict[str, JobView] = {}
        self.metrics = WorkerMetrics()
        self.clock = FakeClock()
        self.executor = PoolExecutor(
            name="p", pool=self.pool, client=make_client(self.pool), publisher=self.publisher,
            lookup=self.views.get, results=ResultStore(url=f"file://{tmp_path}/objects",
                                                       inline_threshold=threshold),
            pipeline=pipeline_for(self.pool), metrics=self.metrics, worker_id="w1",
            breaker=CircuitBreaker(failure_threshold=self.pool.breaker_failures,
                                   reset_timeout_s=self.pool.breaker_reset_s, clock=self.clock),
        )

    async def run(self, items: list[WorkItem], lane: str = "interactive") -> list[WorkOutcome]:
        return await self.executor.execute(items, lane=lane)

    async def close(self) -> None:
        await self.executor.client.aclose()


@pytest.fixture
async def harness(emulator: str, tmp_path: Path) -> Any:
    made: list[Harness] = []

    def make(**kw: Any) -> Harness:
        made.append(Harness(emulator, tmp_path, **kw))
        return made[-1]

    yield make
    for h in made:
        await h.close()


def embedding_of(outcome: WorkOutcome) -> list[float]:
    assert outcome.result_inline is not None
    vector: list[float] = json.loads(outcome.result_inline)["embedding"]
    return vector


async def test_shuffled_responses_reach_their_own_jobs(emulator: str, harness: Any) -> None:
    configure(emulator, shuffle=True, seed=7)
    h = harness()
    items = [work_item(f"text number {i}") for i in range(12)]
    outcomes = await h.run(items)
    assert [o.kind for o in outcomes] == ["succeeded"] * 12
    for item, outcome in zip(items, outcomes, strict=True):
        assert outcome.job_id == item.spec.job_id
        expected = pseudo_embedding(json.loads(item.spec.input or ""))
        assert embedding_of(outcome) == pytest.approx(expected, abs=1e-6)
        assert outcome.batch_size == 12
    # One batch, one id: each outcome names it
    assert len({o.batch_id for o in outcomes}) == 1 and outcomes[0].batch_id


async def test_partial_responses_fail_only_the_missing_items(emulator: str, harness: Any) -> None:
    configure(emulator, shuffle=True, drop_rate=0.4, seed=3)
    h = harness()
    items = [work_item(f"partial {i}") for i in range(20)]
    outcomes = await h.run(items)
    kinds = {o.kind for o in outcomes}
    assert kinds == {"succeeded", "failed"}
    for item, outcome in zip(items, outcomes, strict=True):
        if outcome.kind == "succeeded":
            expected = pseudo_embedding(json.loads(item.spec.input or ""))
            assert embedding_of(outcome) == pytest.approx(expected, abs=1e-6)
        else:
            assert outcome.error_class == "transient"


async def test_rate_limit_pauses_the_pool_until_retry_after(emulator: str, harness: Any) -> None:
    configure(emulator, rate_429=1.0, retry_after_s=1)
    h = harness()
    h.executor._clock = time.monotonic  # the pause is real time
    first = await h.run([work_item("a"), work_item("b")])
    assert {(o.kind, o.error_class, o.retry_after_ms) for o in first} == {("failed", "rate_limited", 1000)}
    began = time.monotonic()  # the pause runs from the 429, not from the reconfiguration
    configure(emulator, rate_429=0.0)
    second = await h.run([work_item("c")])
    assert second[0].kind == "succeeded"
    assert time.monotonic() - began >= 0.9, "the second call did not wait for Retry-After"
    assert h.metrics.rate_limited.labels("p")._value.get() == 1
    assert h.publisher.circuits == [], "a 429 is not a breaker failure"


async def test_breaker_opens_routes_to_fallback_and_closes_after_probe(
    emulator: str, harness: Any
) -> None:
    configure(emulator, rate_5xx=1.0)
    h = harness(breaker_failures=2, breaker_reset_s=5.0, fallback="spare")
    for text in ("x1", "x2"):
        (outcome,) = await h.run([work_item(text)])
        assert outcome.error_class == "transient"
    assert [(k, type(r).__name__) for k, r in h.publisher.circuits] == [
        ("circuit:p:emulated-minilm", "CircuitOpened")
    ]
    calls = stats(emulator)["requests"]
    # While open: interactive jobs fail fast towards the fallback pool, batch-lane jobs are delayed.
    (interactive,) = await h.run([work_item("y")])
    (batch,) = await h.run([work_item("z", lane="batch")], lane="batch")
    assert interactive.error_class == batch.error_class == "circuit_open"
    assert "fallback pool spare" in (interactive.error or "")
    assert "retry tiers" in (batch.error or "") and (batch.retry_after_ms or 0) > 0
    assert stats(emulator)["requests"] == calls, "an open breaker must not call the model"
    assert h.metrics.circuit_state.labels("p", "emulated-minilm")._value.get() == 2
    # After the reset timeout, one probe goes through; its success closes the breaker.
    configure(emulator, rate_5xx=0.0)
    h.clock.now += 5.0
    (probe,) = await h.run([work_item("probe")])
    assert probe.kind == "succeeded"
    assert [type(r).__name__ for _, r in h.publisher.circuits] == [
        "CircuitOpened", "CircuitHalfOpened", "CircuitClosed"
    ]
    assert h.metrics.circuit_state.labels("p", "emulated-minilm")._value.get() == 0


async def test_finished_cancelled_and_stale_jobs_never_reach_the_model(emulator: str, harness: Any) -> None:
    h = harness()
    done, cancelled, stale, fresh = (work_item(t) for t in ("done", "cancelled", "stale", "fresh"))
    h.views[done.spec.job_id] = JobView(job_id=done.spec.job_id, status="succeeded", attempt=1)
    h.views[cancelled.spec.job_id] = JobView(job_id=cancelled.spec.job_id, cancel_requested=True)
    h.views[stale.spec.job_id] = JobView(job_id=stale.spec.job_id, status="queued", attempt=2)
    outcomes = await h.run([done, cancelled, stale, fresh])
    assert [o.kind for o in outcomes] == ["skipped", "skipped", "skipped", "succeeded"]
    assert "already succeeded" in (outcomes[0].error or "")
    assert stats(emulator)["seen"] == {"fresh": 1}


async def test_redelivered_attempt_calls_the_model_once(emulator: str, harness: Any) -> None:
    h = harness()
    item = work_item("only once")
    (first,) = await h.run([item])
    (again,) = await h.run([item])
    assert (first.kind, again.kind) == ("succeeded", "skipped")
    assert stats(emulator)["seen"] == {"only once": 1}
    ids = [o.outcome_id for o in h.publisher.outcomes if o.kind == "succeeded"]
    assert len(ids) == 1


async def test_broken_postprocess_step_fails_the_job_permanently(emulator: str, harness: Any) -> None:
    h = harness(postprocess=["l2_normalize", "json_extract"])
    (outcome,) = await h.run([work_item("no text field")])
    assert (outcome.kind, outcome.error_class) == ("failed", "permanent")
    assert "post-processing step 'json_extract' failed" in (outcome.error or "")


async def test_large_results_go_to_the_store_by_job_id(emulator: str, harness: Any, tmp_path: Path) -> None:
    h = harness(threshold=100, postprocess=["truncate:8"])
    item = work_item("big")
    (outcome,) = await h.run([item])
    assert outcome.kind == "succeeded" and outcome.result_inline is None
    assert outcome.result_ref == f"file://{tmp_path}/objects/results/{item.spec.job_id}.json"
    stored = (tmp_path / "objects" / "results" / f"{item.spec.job_id}.json").read_bytes()
    assert len(stored) == outcome.result_size
    assert len(json.loads(stored)["embedding"]) == 8


async def test_bad_input_fails_permanently_without_a_call(emulator: str, harness: Any) -> None:
    h = harness()
    item = work_item("ok")
    broken = replace(item, spec=replace(item.spec, input="{not json"))
    (outcome,) = await h.run([broken])
    assert (outcome.kind, outcome.error_class) == ("failed", "permanent")
    assert stats(emulator)["requests"] == 0


async def test_a_long_retry_after_pause_is_capped_and_counted(emulator: str, harness: Any) -> None:
    configure(emulator, rate_429=1.0, retry_after_s=86_400)
    h = harness(retry_after_cap_s=2.0)
    h.executor._clock = time.monotonic
    first = await h.run([work_item("a")])
    assert first[0].error_class == "rate_limited" and first[0].retry_after_ms == 86_400_000
    # The pool pauses for the cap, not a day, and the capped pause is counted
    assert 0 < h.executor.paused_until - time.monotonic() <= 2.0
    assert h.metrics.retry_after_capped.labels("p")._value.get() == 1


class GatedPublisher(RecordingPublisher):
    """Holds every `started` publish until ``release`` is set (or fails it with ``error``)."""

    def __init__(self, *, error: Exception | None = None) -> None:
        super().__init__()
        self.release = asyncio.Event()
        self.error = error
        self.waiting = 0

    async def outcome(self, outcome: WorkOutcome) -> None:
        if outcome.kind == "started":
            self.waiting += 1
            await self.release.wait()
            if self.error is not None:
                raise self.error
        await super().outcome(outcome)


async def _until_seen(url: str, text: str) -> None:
    deadline = time.monotonic() + 30
    while stats(url)["seen"].get(text) != 1:
        assert time.monotonic() < deadline, "the model was never called"
        await asyncio.sleep(0.01)


async def test_a_call_within_the_announce_window_reports_its_start_with_the_outcome(
        emulator: str, harness: Any) -> None:
    # Given a model that answers well within the pool's announce window
    h = harness(announce_start_after_ms=10_000)
    before = datetime.now(UTC)
    items = [work_item(f"quick {i}") for i in range(3)]
    # When the batch runs
    outcomes = await h.run(items)
    # Then no `started` outcome is published: each final outcome carries the call's start
    assert [o.kind for o in h.publisher.outcomes] == ["succeeded"] * 3
    for item, outcome in zip(items, outcomes, strict=True):
        assert outcome.started_at is not None and before <= outcome.started_at <= outcome.occurred_at
        assert outcome.lease_ms == item.lease_ms and outcome.batch_id
    assert len({o.started_at for o in outcomes}) == 1


async def test_a_call_outlasting_the_announce_window_publishes_started_first(
        emulator: str, harness: Any) -> None:
    # Given a model call that takes far longer than the pool's announce window
    configure(emulator, batch_latency_ms=400)
    h = harness(announce_start_after_ms=20)
    h.executor.publisher = gated = GatedPublisher()
    running = asyncio.create_task(h.run([work_item("slow")]))
    # When the window passes while the model still works
    await _until_seen(emulator, "slow")
    deadline = time.monotonic() + 30
    while not gated.waiting:
        assert time.monotonic() < deadline, "no `started` was published during the call"
        await asyncio.sleep(0.005)
    # Then the `started` outcome is on its way before the call ends, the final one after it
    assert not running.done()
    gated.release.set()
    outcomes = await asyncio.wait_for(running, 30)
    assert [o.kind for o in gated.outcomes] == ["started", "succeeded"]
    assert outcomes[0].started_at is None


async def test_model_call_overlaps_started_ack_but_succeeded_waits_for_it(
        emulator: str, harness: Any) -> None:
    # Given a pool that announces every call, and a publisher that has not acknowledged the
    # batch's `started` outcome yet
    h = harness(announce_start_after_ms=0)
    h.executor.publisher = gated = GatedPublisher()
    running = asyncio.create_task(h.run([work_item("overlap")]))
    # When the model answers meanwhile
    await _until_seen(emulator, "overlap")
    await asyncio.sleep(0.05)  # room for a wrongly early `succeeded`; the assertion is on records
    # Then nothing final is published before `started` is durable, and after it, in order
    assert gated.outcomes == [] and not running.done()
    gated.release.set()
    outcomes = await asyncio.wait_for(running, 30)
    assert [o.kind for o in outcomes] == ["succeeded"]
    assert [o.kind for o in gated.outcomes] == ["started", "succeeded"]


async def test_failed_started_publish_reports_nothing_final(emulator: str, harness: Any) -> None:
    h = harness(announce_start_after_ms=0)
    h.executor.publisher = gated = GatedPublisher(error=OSError("broker gone"))
    gated.release.set()
    with pytest.raises(OSError, match="broker gone"):
        await h.run([work_item("lost start")])
    # The batch fails as a whole: its work stays unacked and is redelivered, never half-reported.
    assert gated.outcomes == []
