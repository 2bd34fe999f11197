"""The read model on ClickHouse: status lookups, event lists, job pages, tenant stats.

Every query names ``tenant_id`` first in its WHERE clause, which is also the first
column of every sorting key: tenant scoping is both the security boundary and the
index. A status lookup reads every stored version of its one job and keeps the one with
the highest sequence (the latest insert on a tie, as a merge would); the page queries read
``jobs`` with ``FINAL`` for the same guarantee before ClickHouse merges, and their WHERE
filters on non-key columns are applied after FINAL (ClickHouse's default), so a stale row
never matches a filter.
"""

from __future__ import annotations

import base64
import binascii
import json
from datetime import UTC, datetime, timedelta
from typing import Any

from brigade.errors import ProjectionError
from brigade.status import Status
from projections.readmodel import JobEventView, JobPage, JobStatus, TenantStats
from projections.rows import detail
from projections.types import ClickHouse
from schemas.codec import Codec

_STATUS_COLUMNS = (
    "job_id, tenant_id, status, attempts, created_at, updated_at, sequence, pool, model, priority, "
    "error, result_ref, result_inline, cancel_requested"
)
# The point lookup, without FINAL: FINAL merges every part the key touches through a
# parallel pipeline, and its cost grows with the small parts the projector's frequent
# inserts leave until merges catch up (measured with 41 parts: ~13 ms of CPU against
# ~7 ms for this). Sorting the job's few versions by sequence keeps what FINAL would pick
# (the highest sequence, then the latest part, ``_part_data_version``, on a tie), and one
# thread is enough for a handful of rows. Lazy materialisation reads the wide columns
# (``result_inline``) of the winning row only. See docs/benchmarks.md.
_JOB_LOOKUP = (
    f"SELECT {_STATUS_COLUMNS} FROM jobs WHERE tenant_id = {{tenant:String}} AND job_id = {{job:String}} "
    "ORDER BY sequence DESC, _part_data_version DESC LIMIT 1 SETTINGS max_threads = 1"
)
_MAX_LIMIT = 1000
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICRO = timedelta(microseconds=1)


class ClickHouseReadModel:
    """:class:`projections.readmodel.ReadModel` over the projection tables."""

    def __init__(self, clickhouse: ClickHouse) -> None:
        """Read through ``clickhouse`` (its database holds the projections)."""
        self._ch = clickhouse
        self._codec = Codec()

    def job(self, tenant_id: str, job_id: str) -> JobStatus | None:
        """The job's latest state, or None when unknown to this tenant."""
        rows = self._ch.query_dicts(_JOB_LOOKUP, {"tenant": tenant_id, "job": job_id})
        return status_from_row(rows[0]) if rows else None

    def events(self, tenant_id: str, job_id: str) -> list[JobEventView]:
        """The job's lifecycle events in order; empty when unknown to this tenant."""
        rows = self._ch.query(
            "SELECT event_id, sequence, event_type, occurred_at, base64Encode(raw) FROM job_events FINAL "
            "WHERE tenant_id = {tenant:String} AND job_id = {job:String} ORDER BY sequence",
            {"tenant": tenant_id, "job": job_id},
        )
        return [
            JobEventView(event_id=event_id, job_id=job_id, sequence=int(sequence), event_type=event_type,
                         occurred_at=occurred_at, detail=detail(self._codec.decode(base64.b64decode(raw))))
            for event_id, sequence, event_type, occurred_at, raw in rows
        ]

    def list_jobs(
        self,
        tenant_id: str,
        *,
        status: Status | None = None,
        pool: str | None = None,
        since: datetime | None = None,
        limit: int = 50,
        cursor: str | None = None,
    ) -> JobPage:
        """A page of the tenant's jobs, newest first (by creation time, then job id).

        Raises:
            ProjectionError: the cursor is not one this model issued.
        """
        limit = max(1, min(limit, _MAX_LIMIT))
        where = ["tenant_id = {tenant:String}"]
        params: dict[str, Any] = {"tenant": tenant_id, "limit": limit + 1}
        if status is not None:
            where.append("status = {status:String}")
            params["status"] = status
        if pool is not None:
            where.append("pool = {pool:String}")
            params["pool"] = pool
        if since is not None:
            where.append("created_at >= {since:DateTime64(6, 'UTC')}")
            params["since"] = since
        if cursor is not None:
            where.append("(created_at, job_id) < ({after_at:DateTime64(6, 'UTC')}, {after_id:String})")
            params["after_at"], params["after_id"] = decode_cursor(cursor)
        rows = self._ch.query_dicts(
            f"SELECT {_STATUS_COLUMNS} FROM jobs FINAL WHERE {' AND '.join(where)} "
            "ORDER BY created_at DESC, job_id DESC LIMIT {limit:UInt32}",
            params,
        )
        jobs = [status_from_row(row) for row in rows[:limit]]
        more = len(rows) > limit
        return JobPage(jobs=jobs, next_cursor=encode_cursor(jobs[-1]) if more and jobs else None)

    def tenant_stats(self, tenant_id: str, *, since: datetime) -> TenantStats:
        """Counts of the tenant's transitions since ``since`` (to the minute) and its job latencies.

        Latencies are end to end (created to finished) of jobs that finished in the window.
        """
        rows = self._ch.query(
            "SELECT sum(submitted), sum(succeeded), sum(failed), sum(cancelled), sum(dead_lettered), "
            "sum(retries), quantilesMerge(0.5, 0.95, 0.99)(total_ms_q) FROM job_metrics_1m "
            "WHERE tenant_id = {tenant:String} AND minute >= toStartOfMinute({since:DateTime64(6, 'UTC')})",
            {"tenant": tenant_id, "since": since},
        )
        submitted, succeeded, failed, cancelled, dead, retries, quantiles = rows[0]
        finished = int(succeeded or 0) + int(failed or 0) + int(cancelled or 0)
        p50, p99 = (_finite(quantiles[0]), _finite(quantiles[2])) if finished and quantiles else (None, None)
        return TenantStats(
            tenant_id=tenant_id, submitted=int(submitted or 0), succeeded=int(succeeded or 0),
            failed=int(failed or 0), cancelled=int(cancelled or 0), dead_lettered=int(dead or 0),
            retries=int(retries or 0), p50_latency_ms=p50, p99_latency_ms=p99,
        )


def status_from_row(row: dict[str, Any]) -> JobStatus:
    """A ``jobs`` row (``{column: value}``) as the read model answers it."""
    return JobStatus(
        job_id=row["job_id"], tenant_id=row["tenant_id"], status=row["status"],
        attempts=int(row["attempts"]), created_at=row["created_at"], updated_at=row["updated_at"],
        sequence=int(row["sequence"]), pool=row["pool"] or None, model=row["model"] or None,
        priority=row["priority"] or None, error=row["error"], result_ref=row["result_ref"],
        result_inline=row["result_inline"], cancel_requested=bool(row["cancel_requested"]),
    )


def _finite(value: Any) -> float | None:
    number = float(value)
    return number if number == number else None  # NaN when no value was aggregated


def encode_cursor(job: JobStatus) -> str:
    """An opaque cursor pointing just after ``job`` in newest-first order."""
    micros = (job.created_at - _EPOCH) // _MICRO
    raw = json.dumps([micros, job.job_id], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[datetime, str]:
    """``(created_at, job_id)`` of a cursor from :func:`encode_cursor`.

    Raises:
        ProjectionError: the cursor is malformed.
    """
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        micros, job_id = json.loads(raw)
        at = _EPOCH + int(micros) * _MICRO
    except (ValueError, TypeError, binascii.Error) as exc:
        raise ProjectionError(f"invalid cursor {cursor!r}") from exc
    if not isinstance(job_id, str):
        raise ProjectionError(f"invalid cursor {cursor!r}")
    return at, job_id
