"""A worker SIGKILLed while delivering a callback: the replacement delivers it (at-least-once)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from brigade.kafka import topology
from brigade.kafka.clients import make_admin
from brigade.kafka.topology import Topology
from brigade.settings import CallbackSettings, LaneSettings, PoolSettings, Settings
from workers.callbacks import DELIVERY_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, verify
from workers.emulator import EmulatorConfig, create_emulator_app

from .kafka_harness import StandInProcessor, WorkerProcess, make_spec
from .uvicorn_server import serve

MODEL = "emulated-minilm"


class StallingReceiver:
    """Holds the first delivery open until the test ends; accepts and keeps the later ones."""

    def __init__(self) -> None:
        self.arrived = 0
        self.accepted: list[tuple[dict[str, str], bytes]] = []
        self.release = threading.Event()

    async def hook(self, request: Request) -> Response:
        self.arrived += 1
        body = await request.body()
        if self.arrived == 1:
            await asyncio.to_thread(self.release.wait)  # the sender dies meanwhile
            return Response(status_code=503)
        self.accepted.append((dict(request.headers), body))
        return Response(status_code=204)

    async def healthz(self, request: Request) -> Response:
        return JSONResponse({"ok": True})

    def app(self) -> Starlette:
        return Starlette(routes=[Route("/hook", self.hook, methods=["POST"]),
                                 Route("/healthz", self.healthz)])


@pytest.fixture
def receiver() -> Iterator[tuple[StallingReceiver, str]]:
    rx = StallingReceiver()
    with serve(rx.app()) as url:
        try:
            yield rx, url
        finally:
            rx.release.set()


@pytest.fixture
def emulator() -> Iterator[str]:
    with serve(create_emulator_app(EmulatorConfig(batch_latency_ms=5, item_latency_ms=0.1))) as url:
        yield url


@pytest.mark.chaos
@pytest.mark.slow
def test_callback_in_flight_when_its_worker_is_killed_is_delivered_by_the_next(
    settings: Settings, emulator: str, receiver: tuple[StallingReceiver, str], tmp_path: Path
) -> None:
    rx, rx_url = receiver
    pool = PoolSettings(model=MODEL, endpoint=emulator,
                        batch=LaneSettings(max_batch_size=4, max_delay_ms=20, token_budget=10_000))
    cfg = settings.model_copy(update={
        "pools": {"p": pool}, "default_pool": "p",
        "callbacks": CallbackSettings(secrets={"t1": "s3cret"}, allow_private=True, timeout_s=300),
    })
    assert not topology.apply(make_admin(cfg), Topology(cfg).specs()).drift
    processor = StandInProcessor(cfg)
    first = WorkerProcess(cfg, ["p"], tmp_path / "worker-1.log")
    processor.workers.append(first)
    second: WorkerProcess | None = None
    try:
        # Given a job with a callback whose first delivery is in progress
        spec = make_spec("with callback", callback_url=f"{rx_url}/hook")
        processor.dispatcher.submit(spec, pool="p", lane="batch", model=MODEL)
        processor.wait_for(lambda: rx.arrived >= 1, timeout=120, what="the first delivery")
        # When its worker is SIGKILLed mid-delivery
        first.kill()
        # Then the replacement worker delivers it, signed, with the job id as delivery id
        second = WorkerProcess(cfg, ["p"], tmp_path / "worker-2.log")
        processor.workers.append(second)
        processor.wait_for(lambda: rx.accepted, timeout=150, what="a delivery by the replacement")
        headers, body = rx.accepted[0]
        stamp = int(headers[TIMESTAMP_HEADER.lower()])
        assert verify(b"s3cret", stamp, body, headers[SIGNATURE_HEADER.lower()])
        assert headers[DELIVERY_HEADER.lower()] == spec.job_id
        assert processor.wait_for(lambda: [o for o in processor.of(spec.job_id, "callback") if o.callback_ok],
                                  what="the delivery reported")
    finally:
        first.kill()
        if second is not None:
            second.kill()
        processor.close()
