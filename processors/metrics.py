"""Prometheus metrics of a processor process, in their own registry (no global state)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


class Metrics:
    """Counters and histograms the job processor and delay tiers update."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.events = Counter("brigade_processor_events_emitted", "Lifecycle events emitted, by type",
                              ["type"], registry=r)
        self.inputs = Counter("brigade_processor_inputs", "Inputs decided, by kind and verdict",
                              ["kind", "note"], registry=r)
        self.duplicates = Counter("brigade_processor_duplicates", "Duplicate commands or outcomes",
                                  registry=r)
        self.conflicts = Counter("brigade_processor_conflicts",
                                 "Resubmissions of a job id with a different payload", registry=r)
        self.illegal = Counter("brigade_processor_illegal_transitions",
                               "Transitions rejected by the state machine", registry=r)
        self.dead_letters = Counter("brigade_processor_dead_letters", "Messages sent to the DLQ",
                                    ["reason"], registry=r)
        self.retries = Counter("brigade_processor_retries", "Retries scheduled, by delay tier",
                               ["tier"], registry=r)
        self.timers_forwarded = Counter("brigade_delay_timers_forwarded",
                                        "Retry timers handed back when due, by tier", ["tier"],
                                        registry=r)
        self.lease_checks = Counter("brigade_processor_checks_sent",
                                    "Lease/deadline checks raised by the timer", registry=r)
        self.dispatch_latency = Histogram("brigade_processor_command_to_dispatch_seconds",
                                          "Submit command timestamp to work item acknowledged",
                                          buckets=_LATENCY_BUCKETS, registry=r)

    def note(self, kind: str, note: str) -> None:
        """Count one decided input."""
        self.inputs.labels(kind, note).inc()
        if note == "duplicate":
            self.duplicates.inc()
        elif note == "conflict":
            self.conflicts.inc()
        elif note == "illegal":
            self.illegal.inc()
