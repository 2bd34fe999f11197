"""``?wait=``: woken by the terminal event, capped per tenant and per process; cached /readyz."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from brigade.kafka.clients import consumer_config, make_producer
from brigade.kafka.topology import Topology
from brigade.settings import Settings
from ingress.app import create_app
from ingress.producer import CommandPublisher
from ingress.service import Ingress
from ingress.tenants import TenantStore
from ingress.waiters import EventTail, WaitRegistry, next_messages
from projections.readmodel import JobStatus
from schemas import records as r
from schemas.codec import Codec
from tests.ingress.support import (
    MemoryReadModel,
    StandInProcessor,
    commands_for,
    read_topic,
    serve,
    wait_until,
)


class CountingReadModel(MemoryReadModel):
    """A read model that never learns anything, and counts status look-ups."""

    def __init__(self) -> None:
        super().__init__()
        self.lookups = 0

    def job(self, tenant_id: str, job_id: str) -> JobStatus | None:
        self.lookups += 1
        return None


async def _eventually(check: Any, timeout_s: float = 30.0) -> None:
    """Poll ``check`` on the loop until true; fail after ``timeout_s``."""
    for _ in range(int(timeout_s / 0.01)):
        if check():
            return
        await asyncio.sleep(0.01)
    raise AssertionError("condition not met in time")


@contextmanager
def _served(
    settings: Settings, tenants: TenantStore, read_model: Any, **api: Any
) -> Iterator[tuple[str, Ingress]]:
    configured = settings.model_copy(update={"api": settings.api.model_copy(update=api)})
    app = create_app(configured, read_model=read_model, tenants=tenants,
                     lag_group=f"{settings.kafka.topic_prefix}-processor")
    with serve(app) as url:
        yield url, app.state.ingress


def _spec(settings: Settings, job_id: str) -> r.JobSpec:
    [command] = commands_for(read_topic(settings, Topology(settings).commands), job_id)
    assert isinstance(command, r.SubmitJob)
    return command.spec


def test_a_wait_is_woken_by_the_terminal_event_not_by_polling(
    settings: Settings, topics: Topology, tenant_store: TenantStore
) -> None:
    key = tenant_store.add("acme")[1]
    model = CountingReadModel()
    processor = StandInProcessor(settings, None)  # events reach the log only, never the read model
    with _served(settings, tenant_store, model) as (url, ingress), httpx.Client(
        base_url=url, headers={"Authorization": f"Bearer {key}"}, timeout=60
    ) as http:
        job_id = http.post("/v1/jobs", json={"input": "woken"}).json()["jobId"]
        spec = _spec(settings, job_id)
        before = model.lookups

        async def wait_and_finish() -> httpx.Response:
            async with httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                         timeout=60) as client:
                pending = asyncio.create_task(client.post("/v1/jobs?wait=30", json={"input": "woken"}))
                await _eventually(lambda: ingress.waits.waiting == 1)  # registered: now finish the job
                await asyncio.to_thread(processor.succeeded, spec, json.dumps({"embedding": [2.0]}))
                return await pending

        answer = asyncio.run(wait_and_finish())
    assert answer.status_code == 200, answer.text
    assert answer.json()["status"] == "succeeded" and answer.json()["output"] == {"embedding": [2.0]}
    # One look-up when the wait started (a polling wait would have asked every 50 ms)
    assert model.lookups - before <= 2


def test_concurrent_waits_are_capped_per_tenant_and_in_total(
    settings: Settings, topics: Topology, tenant_store: TenantStore
) -> None:
    keys = {name: tenant_store.add(name)[1] for name in ("greedy", "also-greedy", "polite")}
    caps = {"max_waits_per_tenant": 3, "max_waits": 5}
    with _served(settings, tenant_store, MemoryReadModel(), **caps) as (url, ingress):

        async def scenario() -> dict[str, list[int]]:
            clients = {name: httpx.AsyncClient(base_url=url, headers={"Authorization": f"Bearer {key}"},
                                               timeout=60) for name, key in keys.items()}

            def waiting(tenant: str, text: str) -> asyncio.Task[httpx.Response]:
                return asyncio.create_task(clients[tenant].post("/v1/jobs?wait=20", json={"input": text}))

            try:
                held = [waiting("greedy", f"g{i}") for i in range(3)]
                await _eventually(lambda: ingress.waits.waiting == 3)
                over = await clients["greedy"].post("/v1/jobs?wait=20", json={"input": "g-over"})
                held += [waiting("also-greedy", f"a{i}") for i in range(2)]
                await _eventually(lambda: ingress.waits.waiting == 5)
                total = await clients["polite"].post("/v1/jobs?wait=20", json={"input": "p"})
                plain = await clients["polite"].post("/v1/jobs", json={"input": "p-no-wait"})
                for task in held:
                    task.cancel()
                return {"over": [over.status_code, int(over.headers.get("retry-after", 0))],
                        "total": [total.status_code, int(total.headers.get("retry-after", 0))],
                        "plain": [plain.status_code], "codes": [over.json()["error"]["code"]]}
            finally:
                for client in clients.values():
                    await client.aclose()

        outcome = asyncio.run(scenario())
        wait_until(lambda: ingress.waits.waiting == 0)
    assert outcome["over"][0] == 429 and outcome["over"][1] >= 1
    assert outcome["total"][0] == 429 and outcome["codes"] == ["too_many_waits"]
    assert outcome["plain"] == [202]  # submissions without wait are not capped


def test_readyz_answers_from_a_cached_probe(
    settings: Settings, topics: Topology, tenant_store: TenantStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls = []
    real = CommandPublisher.reachable

    def counting(self: CommandPublisher, timeout_s: float = 2.0) -> set[str]:
        calls.append(timeout_s)
        return real(self, timeout_s)

    monkeypatch.setattr(CommandPublisher, "reachable", counting)
    with _served(settings, tenant_store, MemoryReadModel()) as (url, _):
        before = len(calls)
        answers = [httpx.get(f"{url}/readyz", timeout=30) for _ in range(50)]
        during = len(calls) - before
    assert all(a.status_code == 200 and a.json()["status"] == "ok" for a in answers)
    assert during < 25, during  # a probe per call would be 50


def test_the_event_tail_hands_over_a_message_without_waiting_for_a_full_batch(
    settings: Settings, topics: Topology
) -> None:
    # A batch read that waits for 500 messages or its whole timeout delays every terminal
    # event of a quiet tail by up to that timeout; with a 3-minute timeout that is a hang,
    # and the 60 s join below fails.
    consumer = Consumer(consumer_config(settings, f"{settings.kafka.topic_prefix}-tail-test"))
    try:
        partitions = consumer.list_topics(topics.job_events, timeout=10).topics[topics.job_events].partitions
        consumer.assign([TopicPartition(topics.job_events, p, OFFSET_BEGINNING) for p in partitions])
        producer = make_producer(settings)
        producer.produce(topics.job_events, key=b"job-1", value=b"one event")
        assert producer.flush(30) == 0
        got: list[Any] = []
        reader = threading.Thread(target=lambda: got.extend(next_messages(consumer, 500, timeout_s=180)),
                                  daemon=True)
        reader.start()
        reader.join(60)
        assert not reader.is_alive(), "next_messages waited for a full batch"
        assert [m.value() for m in got] == [b"one event"]
    finally:
        consumer.close()


def test_the_tail_sees_an_event_written_before_its_first_fetch(settings: Settings, topics: Topology) -> None:
    # The contract of EventTail.start. It does not reproduce the race it closes (the client
    # resolves an OFFSET_END position in the background within milliseconds here; in a loaded
    # CI run with partition leaders moving it resolved only after an event had been written):
    # it holds the position fixed at start, which the fix guarantees and the old code did not.
    # Given a tail started (partitions assigned) whose thread has not fetched anything yet
    async def scenario() -> Any:
        registry = WaitRegistry(per_tenant=10, total=10)
        tail = EventTail(settings=settings, registry=registry, loop=asyncio.get_running_loop())
        fetching = tail._thread
        tail._thread = threading.Thread(target=lambda: None)  # the assignment only
        tail.start()
        try:
            # When a job finishes before that first fetch
            envelope = r.Envelope(event_id="e-tail", job_id="tail-job", tenant_id="t",
                                  occurred_at=datetime.now(UTC), sequence=9)
            done = r.JobSucceeded(envelope=envelope, attempt=1, model="m", latency_ms=1.0,
                                  result_inline='{"embedding":[1.0]}')
            producer = make_producer(settings)
            producer.produce(topics.job_events, key=b"tail-job", value=Codec().encode(done))
            assert producer.flush(30) == 0
            tail._thread = fetching
            fetching.start()
            # Then its waiter is answered by the event, not by its timeout
            return await registry.wait("tail-job", 60)
        finally:
            tail.stop()

    terminal = asyncio.run(scenario())
    assert terminal is not None and terminal.status == "succeeded"
