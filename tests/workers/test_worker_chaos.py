"""A worker killed with SIGKILL mid-batch: every job still finishes exactly once."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.topology import Topology
from brigade.settings import LaneSettings, PoolSettings, Settings
from schemas.records import JobSpec
from workers.emulator import EmulatorConfig, create_emulator_app

from .kafka_harness import StandInProcessor, WorkerProcess, make_spec
from .uvicorn_server import serve

MODEL = "emulated-minilm"


@pytest.fixture
def slow_emulator() -> Iterator[str]:
    # 400 ms per call: long enough to kill the worker while a batch is inside the model.
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=400, item_latency_ms=1))) as url:
        yield url


def unfinished(processor: StandInProcessor, specs: list[JobSpec]) -> dict[str, list[str]]:
    """Each unfinished job's outcomes (kind/attempt/worker/error), for the failure message."""
    return {s.input or s.job_id: [f"{o.kind}/{o.worker}/{o.error}" for o in processor.of(s.job_id)]
            for s in specs if s.job_id not in processor.finished}


@pytest.mark.chaos
@pytest.mark.slow
def test_sigkill_mid_batch_every_job_finishes_once(
    settings: Settings, slow_emulator: str, tmp_path: Path
) -> None:
    pool = PoolSettings(model=MODEL, endpoint=slow_emulator, max_concurrency=2,
                        batch=LaneSettings(max_batch_size=5, max_delay_ms=50, token_budget=10_000))
    cfg = settings.model_copy(update={"pools": {"p": pool}, "default_pool": "p"})
    assert not topology.apply(make_admin(cfg), Topology(cfg).specs()).drift
    processor = StandInProcessor(cfg)
    first = WorkerProcess(cfg, ["p"], tmp_path / "worker-1.log")
    second: WorkerProcess | None = None
    processor.workers.append(first)
    try:
        # Given 30 jobs flowing through one worker
        specs = [make_spec(f"chaos {i}") for i in range(30)]
        for spec in specs:
            processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        # When it is SIGKILLed after some jobs finished and while another batch is in the model
        processor.wait_for(lambda: len(processor.finished) >= 5, timeout=120, what="first batches")
        processor.wait_for(lambda: httpx.get(f"{slow_emulator}/_emulator/stats").json()["in_flight"] > 0,
                           what="a batch inside the model")
        first.kill()
        with processor._lock:
            done_before = set(processor.finished)
        # Then a replacement worker finishes every remaining job
        second = WorkerProcess(cfg, ["p"], tmp_path / "worker-2.log")
        processor.workers.append(second)
        try:
            processor.wait_for(lambda: all(s.job_id in processor.finished for s in specs), timeout=150,
                               what="every job finished")
        except AssertionError as exc:
            raise AssertionError(f"{exc}; unfinished: {unfinished(processor, specs)}") from None
        # And every job finished exactly once
        assert all(processor.emitted[s.job_id] == 1 for s in specs)
        assert {processor.finished[s.job_id] for s in specs} == {"succeeded"}
        # And jobs already finished before the kill were skipped on redelivery, not re-run
        seen = httpx.get(f"{slow_emulator}/_emulator/stats").json()["seen"]
        for spec in specs:
            text = spec.input.strip('"') if spec.input else ""
            if spec.job_id in done_before:
                assert seen[text] == 1, f"{text} reached the model again after it had finished"
            assert processor.of(spec.job_id, "succeeded")
    finally:
        first.kill()
        if second is not None:
            second.kill()
        processor.close()
