"""What the read side offers: the interface ingress uses to answer status questions.

Every call is tenant-scoped: a job of another tenant does not exist for the caller.
Implementations: ``projections.queries.ClickHouseReadModel`` (the projections' tables).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from brigade.status import Status


@dataclass(frozen=True, slots=True, kw_only=True)
class JobStatus:
    """The latest projected state of one job."""

    job_id: str
    tenant_id: str
    status: Status
    attempts: int
    created_at: datetime
    updated_at: datetime
    sequence: int
    pool: str | None = None
    model: str | None = None
    priority: str | None = None
    error: str | None = None
    result_ref: str | None = None
    result_inline: str | None = None
    cancel_requested: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class JobEventView:
    """One lifecycle event as the read side shows it."""

    event_id: str
    job_id: str
    sequence: int
    event_type: str
    occurred_at: datetime
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class JobPage:
    """One page of a tenant's jobs; ``next_cursor`` is None on the last page."""

    jobs: list[JobStatus]
    next_cursor: str | None


@dataclass(frozen=True, slots=True, kw_only=True)
class TenantStats:
    """Counts and latencies of one tenant's jobs over a window."""

    tenant_id: str
    submitted: int
    succeeded: int
    failed: int
    cancelled: int
    dead_lettered: int
    retries: int
    p50_latency_ms: float | None
    p99_latency_ms: float | None


class ReadModel(Protocol):
    """Tenant-scoped reads over the projections."""

    def job(self, tenant_id: str, job_id: str) -> JobStatus | None:
        """The job's latest state, or None when unknown to this tenant."""
        ...

    def events(self, tenant_id: str, job_id: str) -> list[JobEventView]:
        """The job's lifecycle events in order; empty when unknown to this tenant."""
        ...

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
        """A page of the tenant's jobs, newest first."""
        ...

    def tenant_stats(self, tenant_id: str, *, since: datetime) -> TenantStats:
        """Counts and latencies of the tenant's jobs since ``since``."""
        ...
