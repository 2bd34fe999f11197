"""The API's Prometheus metrics, in a registry of its own (no process-wide globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class ApiMetrics:
    """Requests by route and status, accepted jobs, refusals and produce latency."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        self.requests = Counter(
            "brigade_api_requests",
            "HTTP requests by route template and status",
            ["method", "route", "status"],
            registry=self.registry,
        )
        self.request_seconds = Histogram(
            "brigade_api_request_seconds",
            "HTTP request latency",
            ["route"],
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.accepted = Counter(
            "brigade_api_jobs_accepted",
            "Jobs durably accepted",
            ["tenant", "priority"],
            registry=self.registry,
        )
        self.duplicates = Counter(
            "brigade_api_jobs_duplicate",
            "Submissions answered with an existing job",
            ["tenant"],
            registry=self.registry,
        )
        self.rate_limited = Counter(
            "brigade_api_rate_limited",
            "429 answers by tenant and limit",
            ["tenant", "limit"],
            registry=self.registry,
        )
        self.shed = Counter(
            "brigade_api_shed",
            "503 answers from back-pressure by priority and level",
            ["priority", "level"],
            registry=self.registry,
        )
        self.produce_seconds = Histogram(
            "brigade_api_produce_seconds",
            "Command produce to broker ack",
            buckets=_LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.status_reads = Counter(
            "brigade_api_status_reads",
            "Job status look-ups by where they were answered (memory: the embedded projector's "
            "inserted states; clickhouse: the read model)",
            ["source"],
            registry=self.registry,
        )
        self.status_cache_jobs = Gauge(
            "brigade_api_status_cache_jobs", "Job states held in memory for status reads",
            registry=self.registry,
        )
        self.consumer_lag = Gauge(
            "brigade_api_processor_lag", "Job processor lag on the commands topic", registry=self.registry
        )

    def render(self) -> bytes:
        """The text exposition format."""
        return generate_latest(self.registry)
