"""How a job's state is stored in the processor's table: compact JSON, never pickle.

The table is derived data (the event log is the truth), so the format only has to
round-trip :class:`processors.lifecycle.Job` exactly; a test checks that it does.
"""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime
from typing import Any

from processors.lifecycle import Job
from schemas.records import JobSpec

_JOB_TIMES = ("lease_deadline", "next_retry_at", "created_at", "updated_at", "dispatched_at")
_SPEC_TIMES = ("created_at", "deadline")


def _time(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value is not None else None


def _spec_to_json(spec: JobSpec) -> dict[str, Any]:
    out = {f.name: getattr(spec, f.name) for f in dataclasses.fields(spec)}
    for name in _SPEC_TIMES:
        out[name] = _time(out[name])
    return out


def _spec_from_json(data: dict[str, Any]) -> JobSpec:
    values = dict(data)
    for name in _SPEC_TIMES:
        values[name] = _parse(values[name])
    return JobSpec(**values)


def encode_job(job: Job) -> bytes:
    """Serialise a job's state for the table."""
    out: dict[str, Any] = {f.name: getattr(job, f.name) for f in dataclasses.fields(job)}
    for name in _JOB_TIMES:
        out[name] = _time(out[name])
    out["spec"] = _spec_to_json(job.spec) if job.spec is not None else None
    return json.dumps(out, separators=(",", ":")).encode()


def decode_job(data: bytes) -> Job:
    """Read a job's state back from the table."""
    values: dict[str, Any] = json.loads(data)
    for name in _JOB_TIMES:
        values[name] = _parse(values.get(name))  # states stored before a field existed lack it
    values["spec"] = _spec_from_json(values["spec"]) if values["spec"] is not None else None
    values["errors"] = tuple(values["errors"])
    values["conflicts"] = tuple(values["conflicts"])
    return Job(**values)
