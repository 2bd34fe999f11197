"""The floor of one Kafka hop: a record's ``CreateTime`` to its delivery to a consumer.

Every hop of an interactive job (command → processor, work item → worker, outcome →
processor, terminal event → the API's ``?wait`` tail) is an ``acks=all`` produce to the
broker and a fetch by a consumer that is already waiting. This measures that alone, with no
Brigade code between: one record every 20 ms from an aiokafka producer (as the processors
and workers send), read by the two consumers Brigade uses, librdkafka (the API's tail) and
aiokafka with Faust's fetch settings (the processors and workers). Starts its own broker
unless ``BRIGADE_BENCH_BOOTSTRAP`` names one.

    .venv/bin/python -m bench.bench_hop [--records 300]
"""

from __future__ import annotations

import argparse
import asyncio
import threading
import time
import uuid
from collections.abc import Callable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from confluent_kafka import Consumer

from bench.bench_kafka import bench_broker
from bench.report import emit, percentile
from brigade.kafka import topology
from brigade.kafka.clients import consumer_config, make_admin
from brigade.settings import KafkaSettings, Settings

INTERVAL_S = 0.02
FAUST_FETCH_MAX_WAIT_MS = 1500  # what faust-streaming's aiokafka driver sets


async def _produce(bootstrap: str, topic: str, records: int) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
    await producer.start()
    try:
        for i in range(records):
            await (await producer.send(topic, b"x" * 200, key=str(i).encode()))
            await asyncio.sleep(INTERVAL_S)
    finally:
        await producer.stop()


def _librdkafka(settings: Settings, topic: str, records: int, ready: Callable[[], None]) -> list[float]:
    consumer = Consumer(consumer_config(settings, f"hop-{uuid.uuid4().hex[:8]}",
                                        **{"auto.offset.reset": "latest"}))
    consumer.subscribe([topic])
    try:
        while not consumer.assignment():
            consumer.poll(0.1)
        ready()
        delays: list[float] = []
        while len(delays) < records:
            message = consumer.poll(1.0)
            if message is not None and message.error() is None:
                delays.append(time.time() * 1000 - message.timestamp()[1])
        return delays
    finally:
        consumer.close()


async def _aiokafka(bootstrap: str, topic: str, partitions: int, records: int,
                    ready: Callable[[], None]) -> list[float]:
    # Assigned rather than subscribed: the fetch path is the same, and no rebalance to wait for.
    consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False,
                                fetch_max_wait_ms=FAUST_FETCH_MAX_WAIT_MS)
    await consumer.start()
    try:
        consumer.assign([TopicPartition(topic, p) for p in range(partitions)])
        await consumer.seek_to_end()
        ready()
        delays: list[float] = []
        while len(delays) < records:
            batch = await consumer.getmany(timeout_ms=1000)
            now = time.time() * 1000
            delays += [now - m.timestamp for messages in batch.values() for m in messages]
        return delays
    finally:
        await consumer.stop()


def _hop(settings: Settings, topic: str, records: int, consumer: str) -> dict[str, Any]:
    bootstrap = settings.kafka.bootstrap
    started = threading.Event()
    result: list[list[float]] = []

    def consume() -> None:
        if consumer == "librdkafka":
            result.append(_librdkafka(settings, topic, records, started.set))
        else:
            result.append(asyncio.run(_aiokafka(bootstrap, topic, settings.topics.partitions, records,
                                                started.set)))

    thread = threading.Thread(target=consume)
    thread.start()
    started.wait(60)
    time.sleep(1.0)  # the first fetch is in flight before the first record
    asyncio.run(_produce(bootstrap, topic, records))
    thread.join(60)
    delays = result[0] if result else []
    return {"consumer": consumer, "records": len(delays), "p50_ms": percentile(delays, 0.5),
            "p99_ms": percentile(delays, 0.99)}


def main() -> None:
    """One hop's delivery latency for each consumer, alternated twice, in one run."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--records", type=int, default=300)
    args = parser.parse_args()
    with bench_broker() as bootstrap:
        prefix = f"hop{uuid.uuid4().hex[:6]}"
        settings = Settings(kafka=KafkaSettings(bootstrap=bootstrap, topic_prefix=prefix))
        topo = topology.Topology(settings)
        topology.apply(make_admin(settings), [s for s in topo.specs() if s.name == topo.job_events])
        rows = [_hop(settings, topo.job_events, args.records, consumer)
                for _ in range(2) for consumer in ("librdkafka", "aiokafka (Faust's fetch)")]
    emit("kafka-hop", f"one Kafka hop, acks=all, a record every {INTERVAL_S * 1000:g} ms: "
         "CreateTime → delivered (CreateTime is whole ms: ~0.5 ms of each figure is rounding)", rows)


if __name__ == "__main__":
    main()
