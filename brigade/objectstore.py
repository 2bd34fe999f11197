"""Payloads and results too large for a queue message, behind an fsspec URL.

``file://`` by default, ``s3://`` (or any fsspec protocol) in production. Calls block: the
API runs them in a worker thread.
"""

from __future__ import annotations

import fsspec

from brigade.errors import BrigadeError


class ObjectStoreError(BrigadeError):
    """An object could not be written or read."""


def write_bytes(url: str, data: bytes) -> None:
    """Write ``data`` at ``url``, creating parent folders; rewriting the same content is harmless.

    Raises:
        ObjectStoreError: the store refused the write.
    """
    try:
        fs, path = fsspec.core.url_to_fs(url)
        fs.makedirs(path.rsplit("/", 1)[0], exist_ok=True)
        fs.pipe_file(path, data)
    except OSError as exc:
        raise ObjectStoreError(f"writing {url} failed: {exc}") from exc


def read_bytes(url: str) -> bytes:
    """The bytes stored at ``url``.

    Raises:
        ObjectStoreError: the object is missing or unreadable.
    """
    try:
        fs, path = fsspec.core.url_to_fs(url)
        data: bytes = fs.cat_file(path)
    except OSError as exc:
        raise ObjectStoreError(f"reading {url} failed: {exc}") from exc
    return data
