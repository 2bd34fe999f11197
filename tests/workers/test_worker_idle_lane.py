"""An idle interactive lane closes its batch at once, through the real broker and worker."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from brigade.settings import LaneSettings, PoolSettings, Settings

from .gated_model import HoldingModel
from .kafka_harness import StandInProcessor, make_spec, one_worker

MODEL = "emulated-minilm"
# Far longer than any wait below: a batch that closes did so by the idle rule or by size.
WINDOW_MS = 600_000


@pytest.fixture
def stack(settings: Settings, holding: tuple[HoldingModel, str],
          tmp_path: Path) -> Iterator[StandInProcessor]:
    model, url = holding
    lane = LaneSettings(max_batch_size=2, max_delay_ms=WINDOW_MS, close_when_idle=True)
    pool = PoolSettings(model=MODEL, endpoint=url, max_concurrency=3, timeout_s=600, interactive=lane)
    cfg = settings.model_copy(update={"pools": {"p": pool}, "default_pool": "p"})
    with one_worker(cfg, tmp_path / "worker.log") as processor:
        try:
            yield processor
        finally:
            model.release()  # before the worker is killed: nothing stays held


def _submit(processor: StandInProcessor, text: str) -> str:
    spec = make_spec(text, lane="interactive")
    processor.dispatcher.submit(spec, pool="p", lane="interactive", model=MODEL)
    return spec.job_id


def _batch_size(processor: StandInProcessor, job: str, what: str) -> int | None:
    (outcome,) = processor.wait_for(lambda: processor.of(job, "succeeded"), timeout=120, what=what)
    return outcome.batch_size


def test_idle_lane_runs_a_lone_item_at_once_and_gathers_while_busy(
    stack: StandInProcessor, holding: tuple[HoldingModel, str]
) -> None:
    processor, (model, _) = stack, holding
    # Given an idle interactive lane whose window is ten minutes, when one job arrives,
    # then it runs alone without waiting for the window
    assert _batch_size(processor, _submit(processor, "lone"), "the lone job") == 1
    # When a job is inside the model and two more arrive meanwhile
    slow = _submit(processor, "slow one")
    processor.wait_for(lambda: model.held > 0, timeout=120, what="the slow job in the model")
    gathered = [_submit(processor, "second"), _submit(processor, "third")]
    # Then those two gather into one batch (closed by its size) while the lane is busy
    assert [_batch_size(processor, job, "a gathered job") for job in gathered] == [2, 2]
    assert processor.of(slow, "succeeded") == []
    model.release()
    assert _batch_size(processor, slow, "the released job") == 1
