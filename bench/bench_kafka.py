"""Produce → consume throughput of encoded events through a real local broker.

confluent-kafka with acks=all and idempotence (Brigade's durable producer settings),
against acks=1 without idempotence as the peer baseline in the same run. Starts its own
broker unless ``BRIGADE_BENCH_BOOTSTRAP`` names one.

    .venv/bin/python -m bench.bench_kafka
"""

from __future__ import annotations

import os
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from confluent_kafka import Consumer, Producer

from bench.bench_codec import typical_succeeded
from bench.report import emit
from brigade.kafka import topology
from brigade.kafka.clients import consumer_config, make_admin, producer_config
from brigade.kafka.local import LocalKafka
from brigade.net import free_port
from brigade.settings import KafkaSettings, Settings
from schemas.codec import Codec


@contextmanager
def bench_broker() -> Iterator[str]:
    """A broker for the benchmark: the named one, or a fresh embedded one."""
    named = os.environ.get("BRIGADE_BENCH_BOOTSTRAP")
    if named:
        yield named
        return
    with tempfile.TemporaryDirectory() as folder:
        broker = LocalKafka(data_dir=Path(folder), port=free_port(), controller_port=free_port())
        broker.start()
        try:
            yield broker.bootstrap
        finally:
            broker.stop()


def run(bootstrap: str, n: int, *, durable: bool) -> dict[str, float]:
    """Produce ``n`` encoded events and consume them back; return rates."""
    prefix = f"bench{uuid.uuid4().hex[:8]}"
    settings = Settings(kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix))
    topo = topology.Topology(settings)
    topology.apply(make_admin(settings), [s for s in topo.specs() if s.name == topo.job_events])
    codec = Codec()
    payloads = [codec.encode(typical_succeeded()) for _ in range(1000)]
    overrides = {} if durable else {"acks": "1", "enable.idempotence": False}
    producer = Producer(producer_config(settings, **overrides, **{"linger.ms": 5}))
    start = time.perf_counter()
    for i in range(n):
        while True:
            try:
                producer.produce(topo.job_events, key=str(i % 997), value=payloads[i % 1000])
                break
            except BufferError:
                producer.poll(0.05)
        producer.poll(0)
    producer.flush(60)
    produced = time.perf_counter() - start
    consumer = Consumer(consumer_config(settings, f"{prefix}-g", **{"fetch.min.bytes": 65536}))
    consumer.subscribe([topo.job_events])
    start, received = time.perf_counter(), 0
    while received < n and time.perf_counter() - start < 120:
        for message in consumer.consume(10_000, 1.0):
            if message.error() is None:
                codec.decode(message.value() or b"")
                received += 1
    consumed = time.perf_counter() - start
    consumer.close()
    return {"produce_per_s": n / produced, "consume_decode_per_s": received / consumed,
            "received": received}


def main(n: int = 200_000) -> None:
    """Durable vs. fire-and-forget produce, then consume+decode, in one run."""
    with bench_broker() as bootstrap:
        durable = run(bootstrap, n, durable=True)
        peer = run(bootstrap, n, durable=False)
    emit("kafka", f"Kafka produce → consume, {n:,} JobSucceeded events", [
        {"producer": "acks=all, idempotent (brigade)", **durable},
        {"producer": "acks=1 (peer)", **peer},
    ], extra={"ratio_produce_vs_acks1": durable["produce_per_s"] / peer["produce_per_s"]})


if __name__ == "__main__":
    main()
