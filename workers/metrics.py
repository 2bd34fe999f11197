"""The worker's Prometheus metrics, on a registry the app owns (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

from workers.breaker import State

CIRCUIT_VALUES = {State.CLOSED: 0, State.HALF_OPEN: 1, State.OPEN: 2}


class WorkerMetrics:
    """Counters, gauges and histograms of one worker process."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.circuit_state = Gauge(
            "brigade_worker_circuit_state",
            "Breaker state per pool and model: 0 closed, 1 half-open, 2 open.",
            ["pool", "model"], registry=r,
        )
        self.rate_limited = Counter(
            "brigade_worker_rate_limited", "429 answers from the model service.", ["pool"], registry=r
        )
        self.retry_after_capped = Counter(
            "brigade_worker_retry_after_capped", "Retry-After pauses cut to the pool's retry_after_cap_s.",
            ["pool"], registry=r,
        )
        self.batch_splits = Counter(
            "brigade_worker_batch_splits", "Batched model calls split after a 4xx, to isolate bad items.",
            ["pool"], registry=r,
        )
        self.outcomes = Counter(
            "brigade_worker_outcomes", "Outcomes reported, by kind and error class.",
            ["pool", "lane", "kind", "error_class"], registry=r,
        )
        self.batch_size = Histogram(
            "brigade_worker_batch_size", "Jobs per model call.", ["pool", "lane"], registry=r,
            buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256),
        )
        self.model_latency = Histogram(
            "brigade_worker_model_latency_seconds", "Model call latency.", ["pool", "lane"], registry=r,
        )
        self.batch_wait = Histogram(
            "brigade_worker_batch_wait_seconds", "Time the oldest job of a batch waited in the batcher.",
            ["pool", "lane"], registry=r, buckets=(0.001, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0),
        )
        self.callbacks = Counter(
            "brigade_worker_callback_attempts", "Callback delivery attempts.", ["ok"], registry=r
        )
        self.in_flight = Gauge(
            "brigade_worker_in_flight", "Work items received and not yet acked.", ["pool", "lane"], registry=r
        )

    def set_circuit(self, pool: str, model: str, state: State) -> None:
        """Expose a breaker's state (the ingress back-pressure signal reads it)."""
        self.circuit_state.labels(pool, model).set(CIRCUIT_VALUES[state])
