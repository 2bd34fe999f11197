"""Canned analytics over job history: ``brigade query REPORT`` and tenant-facing reports.

Every report is a function ``(clickhouse, *, since, until, tenant_id=None) -> Report``;
with ``tenant_id`` it covers that tenant's jobs only, which is how ingress serves a
tenant its own numbers. Counts and quantiles come from the per-minute rollups
(``job_metrics_1m``), failure reasons from ``job_events``. Latencies are in ms.
"""

from __future__ import annotations

import csv
import io
import json
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from brigade.errors import ProjectionError
from projections.types import ClickHouse


@dataclass(frozen=True, slots=True)
class Report:
    """A titled table of results."""

    title: str
    columns: tuple[str, ...]
    rows: list[tuple[Any, ...]]

    def as_dicts(self) -> list[dict[str, Any]]:
        """Rows as ``{column: value}``."""
        return [dict(zip(self.columns, row, strict=True)) for row in self.rows]

    def to_json(self) -> str:
        """The report as a JSON document (values stringified where JSON has no type)."""
        return json.dumps({"title": self.title, "rows": self.as_dicts()}, default=str, indent=2)

    def to_csv(self) -> str:
        """The report as CSV with a header row."""
        buffer = io.StringIO()
        writer = csv.writer(buffer)
        writer.writerow(self.columns)
        writer.writerows(self.rows)
        return buffer.getvalue()


ReportFn = Callable[..., Report]
_WINDOW = (
    "minute >= toStartOfMinute({since:DateTime64(6, 'UTC')}) AND minute < {until:DateTime64(6, 'UTC')}"
)
_Q = "arrayMap(x -> round(x, 1), quantilesMerge(0.5, 0.95, 0.99)({col}))"


def _run(ch: ClickHouse, title: str, sql: str, since: datetime, until: datetime,
         tenant_id: str | None) -> Report:
    tenant = " AND tenant_id = {tenant:String}" if tenant_id is not None else ""
    params: dict[str, Any] = {"since": since, "until": until}
    if tenant_id is not None:
        params["tenant"] = tenant_id
    rows = ch.query_dicts(sql.replace("{TENANT}", tenant), params)
    columns = tuple(rows[0]) if rows else _columns_of(sql)
    return Report(title, columns, [tuple(row.values()) for row in rows])


def _columns_of(sql: str) -> tuple[str, ...]:
    select = sql.split("FROM", 1)[0]
    return tuple(re.findall(r"\bAS (\w+)", select))


def throughput(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """Jobs submitted and finished per tenant and pool, and finished jobs per second."""
    sql = f"""
        SELECT tenant_id AS tenant, pool AS pool, sum(submitted) AS submitted,
               sum(succeeded) + sum(failed) + sum(cancelled) AS finished,
               round(finished / greatest(dateDiff('second', {{since:DateTime64(6, 'UTC')}},
                     {{until:DateTime64(6, 'UTC')}}), 1), 3) AS finished_per_s
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY tenant, pool ORDER BY tenant, pool"""
    return _run(ch, "Throughput", sql, since, until, tenant_id)


def success_rate(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """Succeeded over finished-by-the-system (succeeded + failed) per tenant and pool."""
    sql = f"""
        SELECT tenant_id AS tenant, pool AS pool, sum(succeeded) AS succeeded, sum(failed) AS failed,
               sum(dead_lettered) AS dead_lettered, sum(cancelled) AS cancelled,
               round(succeeded / nullIf(succeeded + failed, 0), 4) AS success_rate
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY tenant, pool HAVING succeeded + failed + cancelled > 0 ORDER BY tenant, pool"""
    return _run(ch, "Success rate", sql, since, until, tenant_id)


def latencies(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """p50/p95/p99 of end-to-end, model, queue and processing time per pool and tenant."""
    sql = f"""
        SELECT pool AS pool, tenant_id AS tenant,
               {_Q.format(col="total_ms_q")} AS end_to_end_ms,
               {_Q.format(col="latency_ms_q")} AS model_ms,
               {_Q.format(col="queue_ms_q")} AS queue_ms,
               {_Q.format(col="processing_ms_q")} AS processing_ms
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY pool, tenant HAVING sum(started) > 0 OR sum(succeeded) > 0 ORDER BY pool, tenant"""
    return _run(ch, "Latencies p50/p95/p99 (ms)", sql, since, until, tenant_id)


def failure_reasons(
    ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None, limit: int = 10
) -> Report:
    """The most frequent failure reasons: every failed attempt counts once, retried or final."""
    sql = f"""
        SELECT reason AS reason, error_class AS error_class, count() AS failures,
               countIf(event_type = 'JobFailed' AND terminal = 1) AS terminal, uniqExact(job_id) AS jobs
        FROM job_events FINAL
        WHERE event_type IN ('JobFailed', 'JobRetryScheduled')
          AND occurred_at >= {{since:DateTime64(6, 'UTC')}} AND occurred_at < {{until:DateTime64(6, 'UTC')}}
          {{TENANT}}
        GROUP BY reason, error_class ORDER BY failures DESC, reason LIMIT {int(limit)}"""
    return _run(ch, "Top failure reasons", sql, since, until, tenant_id)


def retry_rates(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """Retries and 429s per attempt started, per tenant and pool."""
    sql = f"""
        SELECT tenant_id AS tenant, pool AS pool, sum(started) AS attempts, sum(retries) AS retries,
               sum(rate_limited) AS rate_limited,
               round(retries / nullIf(attempts, 0), 4) AS retry_rate,
               round(rate_limited / nullIf(attempts, 0), 4) AS rate_limited_rate
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY tenant, pool HAVING attempts > 0 ORDER BY tenant, pool"""
    return _run(ch, "Retry and 429 rates", sql, since, until, tenant_id)


def dlq_growth(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """Dead-lettered jobs per minute and the running total over the window."""
    sql = f"""
        SELECT minute AS minute, sum(dead_lettered) AS dead_lettered,
               sum(dead_lettered) OVER (ORDER BY minute) AS cumulative
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY minute HAVING dead_lettered > 0 ORDER BY minute"""
    return _run(ch, "Dead-letter growth", sql, since, until, tenant_id)


def queue_time(ch: ClickHouse, *, since: datetime, until: datetime, tenant_id: str | None = None) -> Report:
    """Time in queue per minute: attempts started, mean and p50/p95/p99 (ms)."""
    sql = f"""
        SELECT minute AS minute, sum(started) AS started,
               round(sum(queue_ms_sum) / nullIf(started, 0), 1) AS mean_ms,
               {_Q.format(col="queue_ms_q")} AS queue_ms
        FROM job_metrics_1m WHERE {_WINDOW}{{TENANT}}
        GROUP BY minute HAVING started > 0 ORDER BY minute"""
    return _run(ch, "Queue time trend", sql, since, until, tenant_id)


#: ``brigade query NAME`` and ingress's tenant reports, by name.
REPORTS: dict[str, ReportFn] = {
    "throughput": throughput,
    "success-rate": success_rate,
    "latency": latencies,
    "failures": failure_reasons,
    "retries": retry_rates,
    "dlq": dlq_growth,
    "queue-time": queue_time,
}

_READ_ONLY = re.compile(r"^\s*(SELECT|WITH|SHOW|DESCRIBE|DESC|EXPLAIN|EXISTS)\b", re.IGNORECASE)


def raw_query(ch: ClickHouse, sql: str) -> Report:
    """Run an operator's SQL, refusing anything but one read-only statement.

    The statement runs with ``readonly = 1`` too, so ClickHouse itself refuses writes
    that slip past the keyword check (``SELECT`` with side effects, table functions).

    Raises:
        ProjectionError: the SQL is not a single read-only statement, or it failed.
    """
    text = sql.strip().rstrip(";").strip()
    if not _READ_ONLY.match(text) or ";" in text:
        raise ProjectionError(
            "only one read-only statement (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN) is allowed"
        )
    rows = ch.query_dicts(f"{text}\nSETTINGS readonly = 1")
    columns = tuple(rows[0]) if rows else ()
    return Report("Query", columns, [tuple(row.values()) for row in rows])


def report_names() -> Sequence[str]:
    """The names ``REPORTS`` answers to."""
    return tuple(REPORTS)
