"""``brigade top``'s data sources: Kafka lag per group and Prometheus scrapes."""

from __future__ import annotations

import time

from confluent_kafka import Consumer, Producer
from prometheus_client import CollectorRegistry, Counter, start_http_server

from brigade.kafka import topology
from brigade.kafka.clients import consumer_config, make_admin, producer_config
from brigade.settings import Settings
from cli import top
from tests.conftest import free_port


def test_lags_are_listed_per_brigade_group(settings: Settings, topics: topology.Topology) -> None:
    producer = Producer(producer_config(settings))
    for i in range(12):
        producer.produce(topics.outcomes, key=f"k{i}", value=b"x")
    producer.flush(30)
    group = f"{settings.kafka.topic_prefix}-workers"
    consumer = Consumer(consumer_config(settings, group))
    consumer.subscribe([topics.outcomes])
    deadline, read = time.monotonic() + 30, 0
    while read < 5 and time.monotonic() < deadline:
        message = consumer.poll(0.5)
        if message is not None and message.error() is None:
            read += 1
            consumer.commit(message, asynchronous=False)
    consumer.close()
    admin = make_admin(settings)
    groups = top.brigade_groups(admin, settings.kafka.topic_prefix)
    assert groups == [group]
    # Committed offsets cover only partitions the consumer read, so lag is counted over those.
    rows = top.lags(admin, settings.kafka.bootstrap, groups)
    assert [(r.group, r.topic) for r in rows] == [(group, topics.outcomes)]
    assert 0 < rows[0].lag <= 12 - 5


def test_scrape_reads_brigade_samples_and_rates() -> None:
    registry = CollectorRegistry()
    counter = Counter("brigade_demo_jobs", "jobs", ["pool"], registry=registry)
    Counter("other_thing", "ignored", registry=registry).inc()
    port = free_port()
    server, thread = start_http_server(port, addr="127.0.0.1", registry=registry)
    try:
        url = f"http://127.0.0.1:{port}/metrics"
        counter.labels(pool="default").inc(3)
        before = top.scrape([url, "http://127.0.0.1:1/metrics"])
        counter.labels(pool="default").inc(4)
        now = top.scrape([url])
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
    key = (url, "brigade_demo_jobs_total{pool=default}")
    assert before == {key: 3.0}
    assert now == {key: 7.0}
    table = top.metrics_table(now, before, elapsed_s=2.0)
    assert table.row_count == 1
