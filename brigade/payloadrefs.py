"""Which payload references a job may carry, and how a payload is read back.

A client may only name an object the API itself stored for the same tenant: the object
store's ``payloads/<tenant>/<sha256>.json``, nothing else. Any other scheme, host, path,
``..`` or another tenant's prefix is refused at submission (422 naming ``payloadRef``) and
again by the worker before it reads, so a command that reached the log another way (an old
command, the producer SDK, a hand-written record) cannot make a worker open a local file
or fetch a URL. Reads are capped: a payload larger than the cap fails its job permanently
instead of growing the worker's memory.
"""

from __future__ import annotations

import re

import fsspec

from brigade.errors import BrigadeError

PAYLOAD_DIR = "payloads"
_OBJECT_NAME = re.compile(r"[0-9a-f]{64}\.json")


class PayloadRefError(BrigadeError):
    """A payload reference names something other than this tenant's stored object."""


class PayloadTooLarge(BrigadeError):
    """A stored payload is larger than the read cap."""


def tenant_prefix(store_url: str, tenant_id: str) -> str:
    """The URL prefix under which the tenant's payloads are stored (ends with ``/``)."""
    return f"{store_url.rstrip('/')}/{PAYLOAD_DIR}/{tenant_id}/"


def payload_url(store_url: str, tenant_id: str, digest: str) -> str:
    """Where a payload with content hash (or payload hash) ``digest`` is stored."""
    return f"{tenant_prefix(store_url, tenant_id)}{digest}.json"


def ref_problem(ref: str, *, store_url: str, tenant_id: str) -> str | None:
    """None when ``ref`` names one of the tenant's stored payloads, else a sentence why not.

    The check is on the text alone (no I/O): the prefix must be exactly the store's
    ``payloads/<tenant>/`` and the rest exactly ``<64 hex>.json``, so no other scheme,
    host, folder, ``..``, query string or tenant can pass.
    """
    if not tenant_id or tenant_id.startswith(".") or "/" in tenant_id:
        return "this tenant cannot reference stored payloads"
    prefix = tenant_prefix(store_url, tenant_id)
    if not ref.startswith(prefix):
        return f"must be a payloadRef returned by POST /v1/payloads for this tenant (starting {prefix})"
    if not _OBJECT_NAME.fullmatch(ref[len(prefix):]):
        return "must end with <sha256>.json, as returned by POST /v1/payloads"
    return None


def check_ref(ref: str, *, store_url: str, tenant_id: str) -> None:
    """Raise :class:`PayloadRefError` unless ``ref`` names one of the tenant's payloads."""
    problem = ref_problem(ref, store_url=store_url, tenant_id=tenant_id)
    if problem is not None:
        raise PayloadRefError(f"payloadRef {ref[:200]!r} refused: {problem}")


def read_capped(ref: str, *, max_bytes: int) -> bytes:
    """Read the object at ``ref`` (already checked), refusing more than ``max_bytes``.

    Only ``max_bytes + 1`` bytes are ever read, whatever the object's size.

    Raises:
        PayloadTooLarge: the object is larger than ``max_bytes``.
        FileNotFoundError, OSError: as the store reports them.
    """
    fs, path = fsspec.core.url_to_fs(ref)
    with fs.open(path, "rb") as handle:
        data: bytes = handle.read(max_bytes + 1)
    if len(data) > max_bytes:
        raise PayloadTooLarge(f"payload {ref} is larger than the {max_bytes}-byte cap")
    return data
