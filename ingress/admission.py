"""The one admission path: the rules every way of submitting a job shares.

``POST /v1/jobs`` (``ingress.service``), ``POST /v1/jobs:batch`` (``ingress.batch``) and the
producer SDK (``ingress.producer.JobProducer``) all decide here whether a prepared job is new,
a repeat of a job already accepted, or a conflict (the same idempotency key with another
payload), store an oversize input before the command that points at it, and record what they
published. The HTTP paths add what only a server has (single-flight per job id, the read
model, shedding) in ``Ingress.admit``; the SDK has none of those and uses this module alone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from brigade.objectstore import write_bytes
from ingress.commands import PreparedJob
from ingress.idempotency import Accepted, RecentJobs
from schemas.codec import builder

CONFLICT_MESSAGE = "this idempotency key was already used with a different payload"


class IdempotencyConflict(Exception):
    """The job's id (from its idempotency key) is known with a different payload hash."""

    def __init__(self, job_id: str) -> None:
        super().__init__(CONFLICT_MESSAGE)
        self.job_id = job_id


def is_repeat(job: PreparedJob, known_hash: str | None) -> bool:
    """True when ``job`` repeats a known job; False when it is new.

    Raises:
        IdempotencyConflict: the known job has another payload.
    """
    if known_hash is None:
        return False
    if known_hash != job.payload_hash:
        raise IdempotencyConflict(job.job_id)
    return True


def offload(job: PreparedJob) -> None:
    """Store an oversize input in the object store (before the command that refers to it)."""
    if job.offload is not None and job.spec.payload_ref is not None:
        write_bytes(job.spec.payload_ref, job.offload)


_new_accepted = builder(Accepted)  # one per accepted job: half the cost of the frozen __init__


class Ledger:
    """The jobs one process published recently, tenant-scoped: its synchronous idempotency memory."""

    def __init__(self, *, capacity: int = 200_000) -> None:
        self.recent = RecentJobs(capacity=capacity)

    def known(self, tenant_id: str, job_id: str, *, batch: Mapping[str, str] | None = None) -> str | None:
        """The payload hash of ``job_id`` if this tenant published it (or ``batch`` holds it)."""
        if batch is not None and job_id in batch:
            return batch[job_id]
        accepted = self.recent.get(job_id)
        if accepted is None or accepted.tenant_id != tenant_id:
            return None
        return accepted.payload_hash

    def get(self, tenant_id: str, job_id: str) -> Accepted | None:
        """What this process remembers of one of the tenant's jobs, or None."""
        accepted = self.recent.get(job_id)
        return accepted if accepted is not None and accepted.tenant_id == tenant_id else None

    def remember(self, tenant_id: str, jobs: Iterable[PreparedJob]) -> dict[str, int]:
        """Record published jobs; how many of each priority (for the caller's metrics)."""
        counts: dict[str, int] = {}
        for job in jobs:
            spec = job.spec
            self.recent.remember(
                _new_accepted(
                    job_id=spec.job_id,
                    tenant_id=tenant_id,
                    payload_hash=spec.payload_sha256,
                    priority=spec.priority,
                    created_at=spec.created_at,
                )
            )
            counts[spec.priority] = counts.get(spec.priority, 0) + 1
        return counts
