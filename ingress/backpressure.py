"""Back-pressure: watch the job processor's consumer lag on the commands topic.

Past ``api.lag_soft_limit`` the API sheds batch-priority submissions with 503 and
``Retry-After``; past ``api.lag_hard_limit`` it sheds every submission. Lag is sampled by a
background thread (offset fetches are blocking calls), so a request only reads a number.
"""

from __future__ import annotations

import logging
import threading
from typing import Literal

from confluent_kafka import Consumer, KafkaException, TopicPartition

from brigade.kafka.clients import consumer_config
from brigade.kafka.topology import Topology
from brigade.settings import Settings

Level = Literal["ok", "soft", "hard"]
log = logging.getLogger(__name__)
_OFFSET_INVALID = -1001


class LagMonitor:
    """Samples the group's total lag on the commands topic every ``interval_s`` seconds."""

    def __init__(self, *, settings: Settings, group: str, interval_s: float = 1.0) -> None:
        if interval_s <= 0:
            raise ValueError("LagMonitor interval_s must be positive")
        self.group = group
        self.topic = Topology(settings).commands
        self.soft_limit = settings.api.lag_soft_limit
        self.hard_limit = settings.api.lag_hard_limit
        self.lag: int | None = None
        self._interval_s = interval_s
        self._consumer = Consumer(consumer_config(settings, group, **{"client.id": "brigade-api-lag"}))
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="lag-monitor", daemon=True)

    def start(self) -> None:
        """Take a first sample now, then keep sampling in the background."""
        self.sample()
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self._interval_s):
            self.sample()

    def sample(self) -> int | None:
        """Measure the lag now; None when the broker did not answer."""
        try:
            self.lag = self._measure()
        except KafkaException as exc:
            log.warning("consumer lag of %s unknown: %s", self.group, exc)
            self.lag = None
        return self.lag

    def _measure(self) -> int:
        metadata = self._consumer.list_topics(self.topic, timeout=5.0)
        partitions = [TopicPartition(self.topic, p) for p in metadata.topics[self.topic].partitions]
        committed = self._consumer.committed(partitions, timeout=5.0)
        total = 0
        for tp in committed:
            low, high = self._consumer.get_watermark_offsets(tp, timeout=5.0, cached=False)
            position = tp.offset if tp.offset != _OFFSET_INVALID else low
            total += max(0, high - position)
        return total

    def level(self) -> Level:
        """``hard`` past the hard limit, ``soft`` past the soft one, else ``ok`` (and when unknown)."""
        lag = self.lag
        if lag is None:
            return "ok"
        if lag > self.hard_limit:
            return "hard"
        return "soft" if lag > self.soft_limit else "ok"

    def stop(self) -> None:
        """Stop sampling and close the consumer. Idempotent."""
        if self._stop.is_set():
            return
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10.0)
        self._consumer.close()
