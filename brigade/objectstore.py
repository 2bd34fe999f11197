"""Payloads and results too large for a queue message, behind an fsspec URL: the one object store.

``file://`` by default, ``s3://`` (or any fsspec protocol) in production. The API writes
oversize inputs here and reads results; the workers read inputs and write results. Every
write is atomic, so a reader never sees half an object. Calls block: async callers run them
in a worker thread.
"""

from __future__ import annotations

import uuid

import fsspec

from brigade.errors import BrigadeError


class ObjectStoreError(BrigadeError):
    """An object could not be written or read; ``missing`` when it does not exist."""

    def __init__(self, message: str, *, missing: bool = False) -> None:
        super().__init__(message)
        self.missing = missing


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` at ``url`` atomically, creating parent folders; rewriting the same content is harmless.

    Raises:
        ObjectStoreError: the store refused the write.
    """
    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        # Write then rename, so a reader never sees half an object (on object stores the
        # single PUT is already atomic and mv is a copy; these objects are small).
        scratch = f"{path}.{uuid.uuid4().hex}.tmp"
        fs.pipe_file(scratch, data)
        fs.mv(scratch, path)
    except OSError as exc:
        raise ObjectStoreError(f"writing {url} failed: {exc}") from exc


def read_bytes(url: str) -> bytes:
    """The bytes stored at ``url``.

    Raises:
        ObjectStoreError: the object is missing (``missing``) or unreadable.
    """
    try:
        fs, path = fsspec.core.url_to_fs(url)
        data: bytes = fs.cat_file(path)
    except FileNotFoundError as exc:
        raise ObjectStoreError(f"{url} does not exist", missing=True) from exc
    except OSError as exc:
        raise ObjectStoreError(f"reading {url} failed: {exc}") from exc
    return data


def object_exists(url: str) -> bool:
    """Whether an object is stored at ``url`` (False when the store cannot parse it)."""
    try:
        fs, path = fsspec.core.url_to_fs(url)
        return bool(fs.exists(path))
    except (OSError, ValueError):
        return False
