"""One job's timeline: ``brigade audit JOB_ID``.

Read from ``job_events`` (every event, with the Avro bytes it came from), so the
timeline shows exactly what the log says, with the time between transitions.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from projections.rows import detail
from projections.types import ClickHouse
from schemas.codec import Codec

# Fields of an event's detail worth a column in the timeline; the rest stay in --json.
_SUMMARY_FIELDS = ("pool", "lane", "model", "attempt", "worker", "reason", "error_class", "terminal",
                   "latency_ms", "batch_size", "delay_ms", "tier", "result_ref")


@dataclass(frozen=True, slots=True)
class Step:
    """One event of a job's timeline."""

    sequence: int
    event_type: str
    occurred_at: datetime
    since_previous_ms: float
    since_start_ms: float
    status: str
    detail: dict[str, Any]

    def summary(self) -> str:
        """The event's notable fields as ``key=value`` text."""
        return " ".join(f"{k}={self.detail[k]}" for k in _SUMMARY_FIELDS
                        if self.detail.get(k) not in (None, "", 0, False))


def timeline(ch: ClickHouse, job_id: str, *, tenant_id: str | None = None) -> list[Step]:
    """The job's events in order with timings; empty when the job is unknown."""
    where = "job_id = {job:String}" + (" AND tenant_id = {tenant:String}" if tenant_id else "")
    rows = ch.query(
        "SELECT sequence, event_type, occurred_at, status, base64Encode(raw) "
        f"FROM job_events FINAL WHERE {where} ORDER BY sequence",
        {"job": job_id, "tenant": tenant_id or ""},
    )
    codec = Codec()
    steps: list[Step] = []
    for sequence, event_type, occurred_at, status, raw in rows:
        first = steps[0].occurred_at if steps else occurred_at
        previous = steps[-1].occurred_at if steps else occurred_at
        steps.append(Step(
            sequence=int(sequence), event_type=event_type, occurred_at=occurred_at,
            since_previous_ms=(occurred_at - previous).total_seconds() * 1000,
            since_start_ms=(occurred_at - first).total_seconds() * 1000,
            status=status, detail=detail(codec.decode(base64.b64decode(raw))),
        ))
    return steps
