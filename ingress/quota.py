"""Per-tenant quota of offloaded payloads: bytes kept under ``payloads/<tenant>/``."""

from __future__ import annotations

import math
import threading
import time
from typing import Any

import fsspec

from brigade.payloadrefs import tenant_prefix
from brigade.settings import Settings
from ingress.errors import ApiError
from ingress.models import FieldError


def stored_bytes(settings: Settings, tenant_id: str) -> int:
    """Bytes the tenant keeps under its payload prefix (blocking)."""
    fs, path = fsspec.core.url_to_fs(tenant_prefix(settings.object_store_url, tenant_id))
    if not fs.exists(path):
        return 0
    total: Any = fs.du(path, total=True)
    return int(total)


class PayloadQuota:
    """Bytes each tenant keeps under its payload prefix, checked before every offload.

    The first check of a tenant (and one every ``refresh_s``) measures the prefix; writes
    in between are added to the count, so a burst of large submissions is not one
    directory walk each. Other API processes' writes show up at the next measurement.
    """

    def __init__(self, settings: Settings, *, refresh_s: float = 60.0) -> None:
        self.settings = settings
        self.refresh_s = refresh_s
        self._used: dict[str, tuple[int, float]] = {}
        self._lock = threading.Lock()

    def reserve(self, tenant_id: str, size: int) -> None:
        """Count ``size`` more bytes for ``tenant_id`` (blocking: run it in a thread).

        Raises:
            ApiError: 413 ``payload_quota_exceeded`` when the quota would be passed.
        """
        with self._lock:
            used, measured = self._used.get(tenant_id, (0, -math.inf))
            now = time.monotonic()
            if now - measured > self.refresh_s:
                used, measured = stored_bytes(self.settings, tenant_id), now
            quota = self.settings.payload_quota_bytes
            if used + size > quota:
                self._used[tenant_id] = (used, measured)
                raise quota_exceeded(used, size, quota)
            self._used[tenant_id] = (used + size, measured)


def quota_exceeded(used: int, size: int, quota: int) -> ApiError:
    """413: the tenant's stored payloads would pass ``payload_quota_bytes``."""
    return ApiError(
        413,
        "payload_quota_exceeded",
        f"this tenant stores {used} bytes of payloads; {size} more would pass its quota of {quota}",
        fields=[FieldError(loc=["input"], field="input", msg="tenant payload quota", type="quota")],
    )


