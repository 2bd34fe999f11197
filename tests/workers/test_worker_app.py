"""The worker Faust app through the real broker, the emulator and a stand-in processor."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from brigade.settings import CallbackSettings, LaneSettings, PoolSettings, Settings
from workers.callbacks import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from workers.emulator import EmulatorConfig, create_emulator_app

from .kafka_harness import StandInProcessor, make_spec, one_worker
from .test_callbacks import Receiver
from .uvicorn_server import serve

MODEL = "emulated-minilm"


@pytest.fixture
def emulator() -> Iterator[str]:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=5, item_latency_ms=0.1))) as url:
        yield url


@pytest.fixture
def receiver() -> Iterator[tuple[Receiver, str]]:
    rx = Receiver(fail_first=1)
    with serve(rx.app()) as url:
        yield rx, url


def stats(url: str) -> dict[str, Any]:
    data: dict[str, Any] = httpx.get(f"{url}/_emulator/stats").json()
    return data


@pytest.fixture
def worker_settings(settings: Settings, emulator: str) -> Settings:
    pool = PoolSettings(
        model=MODEL, endpoint=emulator,
        interactive=LaneSettings(max_batch_size=4, max_delay_ms=5),
        batch=LaneSettings(max_batch_size=8, max_delay_ms=300, token_budget=10_000),
    )
    return settings.model_copy(update={
        "pools": {"p": pool}, "default_pool": "p",
        "callbacks": CallbackSettings(secrets={"t1": "s3cret"}, allow_private=True,
                                      backoff_base_s=0.05, backoff_cap_s=0.1),
    })


@pytest.fixture
def stack(worker_settings: Settings, tmp_path: Path) -> Iterator[StandInProcessor]:
    with one_worker(worker_settings, tmp_path / "worker.log") as processor:
        yield processor


def test_batches_results_and_signed_callbacks(
    stack: StandInProcessor, emulator: str, receiver: tuple[Receiver, str]
) -> None:
    rx, rx_url = receiver
    processor = stack
    # Given a warm worker (the first job proves the group is assigned)
    warm = processor.dispatcher.submit(make_spec("warm-up", lane="interactive"), pool="p",
                                       lane="interactive", model=MODEL)
    processor.wait_for(lambda: processor.of(warm.spec.job_id, "succeeded"), timeout=120, what="warm-up")
    httpx.post(f"{emulator}/_emulator/reset")
    # When 16 batch-lane jobs arrive together, and one of them asks for a callback
    specs = [make_spec(f"batch job {i}") for i in range(15)]
    specs.append(make_spec("with callback", callback_url=f"{rx_url}/hook"))
    for spec in specs:
        processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
    # Then every job succeeds once, in batches of the lane's size
    processor.wait_for(lambda: all(spec.job_id in processor.finished for spec in specs), what="all succeed")
    assert stats(emulator)["batches"] == {"8": 2}
    for spec in specs:
        (outcome,) = processor.of(spec.job_id, "succeeded")
        assert outcome.batch_size == 8 and outcome.result_inline is not None
        assert len(json.loads(outcome.result_inline)["embedding"]) == 384
        # The start is reported once: by a `started` outcome, or (a call within the announce
        # window, the usual case here) with the result
        assert (len(processor.of(spec.job_id, "started")) == 1) != (outcome.started_at is not None)
    # And the callback was signed, failed once, retried, and every attempt was reported
    cb_job = specs[-1].job_id
    callbacks = processor.wait_for(lambda: [o for o in processor.of(cb_job, "callback") if o.callback_ok],
                                   what="callback delivered")
    assert len(callbacks) == 1
    attempts = sorted((o.callback_attempt, o.callback_status) for o in processor.of(cb_job, "callback"))
    assert attempts == [(1, 500), (2, 204)]
    assert len(rx.requests) == 2
    for headers, body in rx.requests:
        stamp = int(headers[TIMESTAMP_HEADER.lower()])
        assert verify(b"s3cret", stamp, body, headers[SIGNATURE_HEADER.lower()])
        payload = json.loads(body)
        assert (payload["jobId"], payload["status"]) == (cb_job, "succeeded")
        assert len(payload["result"]["embedding"]) == 384


def test_cancelled_and_redelivered_jobs_do_not_reach_the_model(
    stack: StandInProcessor, emulator: str
) -> None:
    processor = stack
    first = processor.dispatcher.submit(make_spec("first", lane="interactive"), pool="p",
                                        lane="interactive", model=MODEL)
    processor.wait_for(lambda: first.spec.job_id in processor.finished, timeout=120, what="first job")
    # A redelivered work message for a job whose success is already in the log is skipped.
    processor.dispatcher.work(first)
    (again,) = processor.wait_for(lambda: processor.of(first.spec.job_id, "skipped"), what="redelivery")
    # Either guard may fire first: the job-state table (JobSucceeded) or this process's memory.
    assert "already" in (again.error or "")
    # A job cancelled before its work message is consumed is skipped without a model call.
    late = make_spec("cancelled first", lane="interactive")
    processor.cancel(late.job_id)
    processor.dispatcher.submit(late, pool="p", lane="interactive", model=MODEL)
    (skipped,) = processor.wait_for(lambda: processor.of(late.job_id, "skipped"), what="cancel skip")
    assert "cancelled" in (skipped.error or "")
    seen = stats(emulator)["seen"]
    assert seen.get("first") == 1
    assert "cancelled first" not in seen
