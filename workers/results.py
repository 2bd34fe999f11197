"""The result store and payload loading, on the object store (``brigade.objectstore``).

Results are keyed by job id, so a retried or redelivered attempt rewriting its result is
harmless: the last write wins and every write of a job's result is a valid result.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from brigade.errors import Permanent, Transient
from brigade.objectstore import ObjectStoreError, read_bytes, write_bytes


@dataclass(frozen=True, kw_only=True)
class StoredResult:
    """Where a result went and what it was."""

    inline: str | None
    ref: str | None
    size: int
    sha256: str


class ResultStore:
    """Writes results above the inline threshold under ``<object_store_url>/results/``."""

    def __init__(self, *, url: str, inline_threshold: int) -> None:
        self.url = url.rstrip("/")
        self.inline_threshold = inline_threshold

    def ref_for(self, job_id: str) -> str:
        """The URL a job's result is stored at."""
        return f"{self.url}/results/{job_id}.json"

    async def put(self, job_id: str, text: str) -> StoredResult:
        """Keep ``text`` inline when small, else write it to the store; raises ``Transient``."""
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if len(data) <= self.inline_threshold:
            return StoredResult(inline=text, ref=None, size=len(data), sha256=digest)
        try:
            await asyncio.to_thread(write_bytes, self.ref_for(job_id), data)
        except ObjectStoreError as exc:
            raise Transient(f"writing result of {job_id} failed: {exc}") from exc
        return StoredResult(inline=None, ref=self.ref_for(job_id), size=len(data), sha256=digest)


async def load_payload(ref: str) -> bytes:
    """Read a referenced payload; a missing object is permanent, an I/O error transient."""
    try:
        return await asyncio.to_thread(read_bytes, ref)
    except ObjectStoreError as exc:
        if exc.missing:
            raise Permanent(f"payload {ref} does not exist") from exc
        raise Transient(f"reading payload {ref} failed: {exc}") from exc
