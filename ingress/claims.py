"""Idempotency across API processes: a durable claim per keyed job, written before the 202.

The first submission of a key writes ``<object store>/claims/<tenant>/<job id>`` holding the
payload hash, with an exclusive create: the object is written under a private name and
hard-linked into place (``file://``), or written with ``mode="xb"`` (If-None-Match on object
stores that support it), so of two racing writers exactly one wins and a reader never sees
half a claim. Every API process, and the producer SDK, shares the object store already
(offloaded payloads live there), so whichever process a retry reaches reads the same
claim: a different payload is a 409 before anything is projected.

Why here and not elsewhere: the job processor does detect the conflict (it emits
``JobRejected``), but only after the 202, and reading the event log or a compacted topic
back on every submission costs a consumer round trip per request. A claim is one small
create, made only for keyed submissions; unkeyed job ids are the payload hash itself and
cannot conflict.
"""

from __future__ import annotations

import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import fsspec

from brigade.errors import BrigadeError

CLAIMS_DIR = "claims"


class ClaimError(BrigadeError):
    """The claim store could not be written or read."""


@dataclass(frozen=True, slots=True)
class Claim:
    """The payload hash stored for a keyed job, and whether this call created it."""

    payload_hash: str
    created: bool


class ClaimStore:
    """Claims under ``<store_url>/claims/``; calls block (run them in a thread)."""

    def __init__(self, store_url: str) -> None:
        self.url = store_url.rstrip("/")
        self._fs, self._root = fsspec.core.url_to_fs(self.url)
        self._local = "file" in self._fs.protocol or "local" in self._fs.protocol

    def claim(self, tenant_id: str, job_id: str, payload_hash: str) -> Claim:
        """Record ``payload_hash`` for the job unless a claim exists; the claim that stands.

        Raises:
            ClaimError: the store failed.
        """
        path = f"{self._root}/{CLAIMS_DIR}/{tenant_id}/{job_id}"
        try:
            if self._create(path, payload_hash.encode()):
                return Claim(payload_hash, True)
            stored: bytes = self._fs.cat_file(path)
        except OSError as exc:
            raise ClaimError(f"the idempotency claim of job {job_id} failed: {exc}") from exc
        return Claim(stored.decode(), False)

    def claim_many(self, tenant_id: str, jobs: list[tuple[str, str]]) -> list[Claim | ClaimError]:
        """:meth:`claim` for each ``(job id, payload hash)``, in one call (one thread hop)."""
        out: list[Claim | ClaimError] = []
        for job_id, payload_hash in jobs:
            try:
                out.append(self.claim(tenant_id, job_id, payload_hash))
            except ClaimError as exc:
                out.append(exc)
        return out

    def _create(self, path: str, data: bytes) -> bool:
        if not self._local:
            try:
                with self._fs.open(path, "xb") as handle:
                    handle.write(data)
            except FileExistsError:
                return False
            return True
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        scratch = target.with_name(f".{target.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.link(scratch, target)  # atomic, and fails if the claim exists
        except FileExistsError:
            return False
        finally:
            scratch.unlink(missing_ok=True)
        return True
