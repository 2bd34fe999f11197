"""One bad item in a batch fails only itself: through a worker process and a model server."""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from pathlib import Path

import pytest

from brigade.payloadrefs import payload_url
from brigade.settings import LaneSettings, PoolSettings, Settings
from workers.emulator import EmulatorConfig, create_emulator_app

from .gated_model import RejectingModel
from .kafka_harness import make_spec, one_worker
from .uvicorn_server import serve

MODEL = "emulated-minilm"


@pytest.fixture
def rejecting() -> Iterator[tuple[RejectingModel, str]]:
    model = RejectingModel(create_emulator_app(EmulatorConfig(batch_latency_ms=1, item_latency_ms=0.1)),
                           marker=b"poison")
    with serve(model) as url:
        yield model, url


@pytest.mark.slow
def test_a_rejected_input_and_an_unreadable_payload_fail_alone(
    settings: Settings, rejecting: tuple[RejectingModel, str], tmp_path: Path
) -> None:
    model, url = rejecting
    pool = PoolSettings(model=MODEL, endpoint=url,
                        batch=LaneSettings(max_batch_size=6, max_delay_ms=2000, token_budget=100_000))
    cfg = settings.model_copy(update={"pools": {"p": pool}, "default_pool": "p"})
    with one_worker(cfg, tmp_path / "worker.log") as processor:
        # Given a warm worker
        warm = make_spec("warm-up")
        processor.dispatcher.submit(warm, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: warm.job_id in processor.finished, timeout=120, what="warm-up")
        # When one batch holds an input the model rejects (400 for the whole call), a payload
        # that is not UTF-8, and good inputs
        # stored where the API keeps this tenant's payloads, so only its bytes are wrong
        garbage_bytes = b"\xff\xfe\x00 not text"
        ref = payload_url(cfg.object_store_url, "t1", hashlib.sha256(garbage_bytes).hexdigest())
        garbage = Path(ref.removeprefix("file://"))
        garbage.parent.mkdir(parents=True, exist_ok=True)
        garbage.write_bytes(garbage_bytes)
        unreadable = dataclasses.replace(make_spec("unreadable"), input=None,
                                         payload_ref=ref, payload_size=len(garbage_bytes))
        poison = make_spec("poison pill")
        good = [make_spec(f"good {i}") for i in range(4)]
        for spec in [good[0], poison, good[1], unreadable, good[2], good[3]]:
            processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        everything = [poison, unreadable, *good]
        processor.wait_for(lambda: all(processor.of(s.job_id, "failed") or processor.of(s.job_id, "succeeded")
                                       for s in everything), timeout=120, what="every outcome")
        # Then the good jobs succeed and each bad one fails permanently, alone
        assert all(processor.finished.get(s.job_id) == "succeeded" for s in good)
        for bad, cause in ((poison, "HTTP 400"), (unreadable, "input is not JSON")):
            (failed,) = processor.of(bad.job_id, "failed")
            assert failed.error_class == "permanent" and cause in (failed.error or ""), failed.error
        assert model.rejected >= 2  # the batch, then the poison alone
