"""Rows of the projection tables, built column-wise from folded events.

Column-wise because the chDB insert path takes Arrow columns (~615k rows/s measured);
building dicts per row and transposing later would cost a second pass.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from projections.fold import Measures, Tracked
from schemas import records as r

# Large free text that belongs in the result store or the payload, not in an event view.
_DETAIL_OMIT = frozenset({"envelope", "input", "result_inline"})


class Columns:
    """Rows of one table's insert, handed over column by column."""

    def __init__(self, names: tuple[str, ...]) -> None:
        self.names = names
        self._rows: list[tuple[Any, ...]] = []

    def add(self, values: tuple[Any, ...]) -> None:
        """Append one row, given in the order of ``names``."""
        self._rows.append(values)

    @property
    def data(self) -> dict[str, Sequence[Any]]:
        """``{column: values}``; transposed once, in C, by ``zip``."""
        if not self._rows:
            return {name: [] for name in self.names}
        return dict(zip(self.names, zip(*self._rows, strict=True), strict=True))

    def __len__(self) -> int:
        return len(self._rows)


EVENT_COLUMNS = (
    "event_id",
    "job_id",
    "tenant_id",
    "sequence",
    "event_type",
    "occurred_at",
    "status",
    "pool",
    "lane",
    "model",
    "attempt",
    "reason",
    "error_class",
    "terminal",
    "rate_limited",
    "queue_ms",
    "processing_ms",
    "latency_ms",
    "total_ms",
    "batch_size",
    "delay_ms",
    "result_ref",
    "raw",
    "kafka_partition",
    "kafka_offset",
)

JOB_COLUMNS = (
    "job_id",
    "tenant_id",
    "status",
    "sequence",
    "attempts",
    "created_at",
    "updated_at",
    "pool",
    "lane",
    "model",
    "priority",
    "last_event",
    "error",
    "error_class",
    "result_ref",
    "result_inline",
    "cancel_requested",
    "dead_lettered",
    "queued_at",
    "started_at",
    "finished_at",
)

CIRCUIT_COLUMNS = (
    "event_id",
    "event_type",
    "occurred_at",
    "pool",
    "model",
    "worker",
    "reason",
    "failures",
    "kafka_partition",
    "kafka_offset",
)


def event_values(
    tracked: Tracked, measures: Measures, event: r.LifecycleEvent, raw: bytes, partition: int, offset: int
) -> tuple[Any, ...]:
    """One ``job_events`` row (in ``EVENT_COLUMNS`` order) for a folded event."""
    envelope = event.envelope
    job = tracked.job
    return (
        envelope.event_id,
        envelope.job_id,
        envelope.tenant_id,
        envelope.sequence,
        type(event).__name__,
        envelope.occurred_at,
        tracked.status,
        _text(job.pool),
        _text(job.lane),
        measures.model or _text(job.model),
        measures.attempt,
        measures.reason,
        measures.error_class,
        measures.terminal,
        measures.rate_limited,
        measures.queue_ms,
        measures.processing_ms,
        measures.latency_ms,
        measures.total_ms,
        measures.batch_size,
        measures.delay_ms,
        getattr(event, "result_ref", None),
        raw,
        partition,
        offset,
    )


def job_values(tracked: Tracked) -> tuple[Any, ...]:
    """One ``jobs`` row (in ``JOB_COLUMNS`` order): the job's latest state."""
    job = tracked.job
    spec = job.spec
    return (
        job.job_id,
        job.tenant_id,
        tracked.status,
        job.sequence,
        int(job.attempt),
        tracked.created_at,
        tracked.updated_at,
        _text(job.pool),
        _text(job.lane),
        _text(job.model),
        spec.priority if spec is not None else "",
        tracked.last_event,
        job.last_error,
        tracked.error_class,
        job.result_ref,
        job.result_inline,
        job.cancel_requested,
        job.dead_lettered,
        tracked.queued_at,
        tracked.started_at,
        tracked.finished_at,
    )


def circuit_values(event: r.CircuitEvent, partition: int, offset: int) -> tuple[Any, ...]:
    """One ``circuit_events`` row (in ``CIRCUIT_COLUMNS`` order)."""
    return (
        event.event_id,
        type(event).__name__,
        event.occurred_at,
        event.pool,
        event.model,
        event.worker,
        event.reason,
        event.failures,
        partition,
        offset,
    )


def detail(event: object) -> dict[str, Any]:
    """The event's own fields (not its envelope, not bulky text), JSON-ready.

    Computed when an event is read (from its ``raw`` bytes), not when it is projected:
    building it for every event cost the projector a fifth of its time.
    """
    out: dict[str, Any] = {}
    for item in dataclasses.fields(event):  # type: ignore[arg-type]
        if item.name in _DETAIL_OMIT:
            continue
        value = getattr(event, item.name)
        if isinstance(value, r.JobSpec):
            value = {f.name: getattr(value, f.name) for f in dataclasses.fields(value) if f.name != "input"}
        out[item.name] = value
    result: dict[str, Any] = json.loads(json.dumps(out, default=_json_default))
    return result


def _json_default(value: object) -> object:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


def _text(value: object) -> str:
    return "" if value is None else str(value)
