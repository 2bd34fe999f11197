"""The result store and payload loading, on the object store (``brigade.objectstore``).

Results are keyed by job id, so a retried or redelivered attempt rewriting its result is
harmless: the last write wins and every write of a job's result is a valid result.
"""

from __future__ import annotations

import asyncio
import hashlib
from dataclasses import dataclass

from brigade.errors import Permanent, Transient
from brigade.objectstore import ObjectStoreError, write_bytes
from brigade.payloadrefs import PayloadRefError, PayloadTooLarge, check_ref, read_capped


@dataclass(frozen=True, kw_only=True)
class StoredResult:
    """Where a result went and what it was."""

    inline: str | None
    ref: str | None
    size: int
    sha256: str


class ResultStore:
    """Writes results above the inline threshold under ``<object_store_url>/results/``."""

    def __init__(self, *, url: str, inline_threshold: int, max_payload_bytes: int = 1024 * 1024) -> None:
        self.url = url.rstrip("/")
        self.inline_threshold = inline_threshold
        self.max_payload_bytes = max_payload_bytes

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


    async def load_payload(self, ref: str, *, tenant_id: str) -> bytes:
        """Read a job's referenced payload: re-checked, capped, never a URL of the client's choosing.

        Raises:
            Permanent: the ref is not the tenant's stored object, the object is missing or
                larger than ``max_payload_bytes``, or the store cannot parse the ref.
            Transient: an I/O error that may pass.
        """
        try:
            check_ref(ref, store_url=self.url, tenant_id=tenant_id)
            return await asyncio.to_thread(read_capped, ref, max_bytes=self.max_payload_bytes)
        except (PayloadRefError, PayloadTooLarge) as exc:
            raise Permanent(str(exc)) from exc
        except FileNotFoundError as exc:
            raise Permanent(f"payload {ref} does not exist") from exc
        except OSError as exc:
            raise Transient(f"reading payload {ref} failed: {exc}") from exc
        except Exception as exc:
            raise Permanent(f"payload {ref} cannot be read: {type(exc).__name__}: {exc}") from exc
