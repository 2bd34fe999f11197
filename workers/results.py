"""The result store and payload loading, through fsspec (``file://`` here, ``s3://`` there).

Results are keyed by job id, so a retried or redelivered attempt rewriting its result is
harmless: the last write wins and every write of a job's result is a valid result.
"""

from __future__ import annotations

import asyncio
import hashlib
import uuid
from dataclasses import dataclass

import fsspec

from brigade.errors import Permanent, Transient


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
        self._fs, self._root = fsspec.core.url_to_fs(self.url)

    def ref_for(self, job_id: str) -> str:
        """The URL a job's result is stored at."""
        return f"{self.url}/results/{job_id}.json"

    async def put(self, job_id: str, text: str) -> StoredResult:
        """Keep ``text`` inline when small, else write it to the store; raises ``Transient``."""
        data = text.encode()
        digest = hashlib.sha256(data).hexdigest()
        if len(data) <= self.inline_threshold:
            return StoredResult(inline=text, ref=None, size=len(data), sha256=digest)
        path = f"{self._root}/results/{job_id}.json"
        try:
            await asyncio.to_thread(self._write, path, data)
        except OSError as exc:
            raise Transient(f"writing result of {job_id} failed: {exc}") from exc
        return StoredResult(inline=None, ref=self.ref_for(job_id), size=len(data), sha256=digest)

    def _write(self, path: str, data: bytes) -> None:
        self._fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        # Write then rename, so a reader never sees half a result (on object stores the
        # single PUT is already atomic and mv is a copy; results are small).
        tmp = f"{path}.{uuid.uuid4().hex}.tmp"
        self._fs.pipe_file(tmp, data)
        self._fs.mv(tmp, path)


async def load_payload(ref: str) -> bytes:
    """Read a referenced payload; a missing object is permanent, an I/O error transient."""

    def read() -> bytes:
        with fsspec.open(ref, "rb") as handle:
            data: bytes = handle.read()
            return data

    try:
        return await asyncio.to_thread(read)
    except FileNotFoundError as exc:
        raise Permanent(f"payload {ref} does not exist") from exc
    except OSError as exc:
        raise Transient(f"reading payload {ref} failed: {exc}") from exc
