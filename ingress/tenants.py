"""Tenants and their API keys, kept in a JSON file that stores only key hashes.

Keys are 256-bit random tokens, so a fast unsalted sha256 is the right hash: salting and
slow KDFs (scrypt, pbkdf2) protect low-entropy passwords from guessing, which a 256-bit
token does not need, and a fast hash keeps authentication to one dict look-up per request.
The file is rewritten atomically (write then rename), and the API reloads it when its
modification time changes, so ``brigade tenants add|revoke`` take effect on a running API.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import threading
import time
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from brigade.endpoints import api_url
from brigade.errors import ConfigError
from brigade.secretfiles import write_private
from brigade.settings import Settings

KEY_PREFIX = "brg_"
_RELOAD_CHECK_S = 1.0


def hash_key(api_key: str) -> str:
    """The stored form of an API key."""
    return hashlib.sha256(api_key.encode()).hexdigest()


def new_key() -> str:
    """A fresh API key: 256 random bits."""
    return KEY_PREFIX + secrets.token_urlsafe(32)


@dataclass(frozen=True, slots=True, kw_only=True)
class ApiKey:
    """One key of a tenant, by hash."""

    key_id: str
    key_hash: str
    created_at: str
    revoked: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class Tenant:
    """A tenant: its keys, its limits and its callback policy."""

    tenant_id: str
    keys: tuple[ApiKey, ...] = ()
    requests_per_second: float = 200.0
    jobs_per_second: float = 5_000.0
    burst_seconds: float = 2.0
    allow_private_callbacks: bool = False
    callback_secret: str = field(default_factory=lambda: secrets.token_hex(32))

    def to_json(self) -> dict[str, Any]:
        """The tenant as stored in the tenants file (camelCase keys)."""
        return {
            "tenantId": self.tenant_id,
            "keys": [
                {"keyId": k.key_id, "keyHash": k.key_hash, "createdAt": k.created_at, "revoked": k.revoked}
                for k in self.keys
            ],
            "requestsPerSecond": self.requests_per_second,
            "jobsPerSecond": self.jobs_per_second,
            "burstSeconds": self.burst_seconds,
            "allowPrivateCallbacks": self.allow_private_callbacks,
            "callbackSecret": self.callback_secret,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Tenant:
        """Parse one entry of the tenants file."""
        keys = tuple(
            ApiKey(
                key_id=k["keyId"],
                key_hash=k["keyHash"],
                created_at=k.get("createdAt", ""),
                revoked=bool(k.get("revoked", False)),
            )
            for k in data.get("keys", [])
        )
        return cls(
            tenant_id=data["tenantId"],
            keys=keys,
            requests_per_second=float(data.get("requestsPerSecond", 200.0)),
            jobs_per_second=float(data.get("jobsPerSecond", 5_000.0)),
            burst_seconds=float(data.get("burstSeconds", 2.0)),
            allow_private_callbacks=bool(data.get("allowPrivateCallbacks", False)),
            callback_secret=str(data.get("callbackSecret", "")),
        )


def tenants_path(settings: Settings) -> Path:
    """``settings.api.tenants_file`` or ``<data_dir>/tenants.json``."""
    return settings.api.tenants_file or settings.path("tenants.json")


class TenantStore:
    """The tenants file: look-up by key hash, add, revoke; reloads when the file changes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        self._tenants: dict[str, Tenant] = {}
        self._by_hash: dict[str, str] = {}
        self._mtime: float | None = None
        self._checked = 0.0
        self._load()

    @classmethod
    def from_settings(cls, settings: Settings) -> TenantStore:
        """The store at ``tenants_path(settings)``."""
        return cls(tenants_path(settings))

    def _load(self) -> None:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._tenants, self._by_hash, self._mtime = {}, {}, None
            return
        try:
            entries = json.loads(self.path.read_text())["tenants"]
            tenants = {t.tenant_id: t for t in map(Tenant.from_json, entries)}
        except (ValueError, KeyError, TypeError) as exc:
            raise ConfigError(f"tenants file {self.path} is not valid: {exc}") from exc
        self._tenants, self._mtime = tenants, mtime
        self._by_hash = {k.key_hash: t.tenant_id for t in tenants.values() for k in t.keys if not k.revoked}

    def _refresh(self) -> None:
        now = time.monotonic()
        if now - self._checked < _RELOAD_CHECK_S:
            return
        self._checked = now
        try:
            mtime: float | None = self.path.stat().st_mtime
        except FileNotFoundError:
            mtime = None
        if mtime != self._mtime:
            with self._lock:
                self._load()

    def authenticate(self, api_key: str) -> Tenant | None:
        """The tenant owning ``api_key``, or None for an unknown or revoked key."""
        self._refresh()
        presented = hash_key(api_key)
        tenant_id = self._by_hash.get(presented)
        if tenant_id is None:
            return None
        tenant = self._tenants[tenant_id]
        # The dict look-up already matched; the constant-time compare keeps the check explicit.
        if not any(hmac.compare_digest(k.key_hash, presented) for k in tenant.keys if not k.revoked):
            return None
        return tenant

    def get(self, tenant_id: str) -> Tenant | None:
        """The tenant, or None."""
        self._refresh()
        return self._tenants.get(tenant_id)

    def list(self) -> list[Tenant]:
        """Every tenant, by id."""
        self._refresh()
        return [self._tenants[t] for t in sorted(self._tenants)]

    def add(self, tenant_id: str, **options: Any) -> tuple[Tenant, str]:
        """Create the tenant (or update its options) and issue a new key; returns the plain key once."""
        # A tenant id names a folder of the object store: no '/', and no leading '.' ('..').
        allowed = all(c.isalnum() or c in "-_." for c in tenant_id)
        if not tenant_id or tenant_id.startswith(".") or not allowed:
            raise ConfigError(f"tenant id {tenant_id!r}: use letters, digits, '-', '_' and '.' (not first)")
        key = new_key()
        record = ApiKey(
            key_id=secrets.token_hex(4), key_hash=hash_key(key), created_at=datetime.now(UTC).isoformat()
        )
        with self._lock:
            self._load()
            current = self._tenants.get(tenant_id) or Tenant(tenant_id=tenant_id)
            tenant = replace(current, keys=(*current.keys, record), **options)
            self._tenants[tenant_id] = tenant
            self._save()
        return tenant, key

    def revoke(self, tenant_id: str, key_id: str | None = None) -> int:
        """Revoke one key (or every key) of a tenant; the number revoked."""
        with self._lock:
            self._load()
            tenant = self._tenants.get(tenant_id)
            if tenant is None:
                raise ConfigError(f"no tenant {tenant_id!r} in {self.path}")
            hit = [k for k in tenant.keys if not k.revoked and key_id in (None, k.key_id)]
            keys = tuple(replace(k, revoked=True) if k in hit else k for k in tenant.keys)
            self._tenants[tenant_id] = replace(tenant, keys=keys)
            self._save()
        return len(hit)

    def _save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        document = {"tenants": [self._tenants[t].to_json() for t in sorted(self._tenants)]}
        write_private(self.path, json.dumps(document, indent=2) + "\n")
        self._load()


@dataclass(frozen=True, slots=True, kw_only=True)
class DevCredentials:
    """What ``make run`` prints and writes to ``.brigade/dev-credentials.json``."""

    url: str
    tenant_id: str
    api_key: str

    def to_json(self) -> dict[str, str]:
        """``{"url", "tenantId", "apiKey"}``."""
        return {"url": self.url, "tenantId": self.tenant_id, "apiKey": self.api_key}


DEV_TENANT = "dev"


def ensure_dev_tenant(settings: Settings) -> DevCredentials:
    """Make sure a dev tenant with a working key exists and its credentials file is current."""
    path = settings.path("dev-credentials.json")
    store = TenantStore.from_settings(settings)
    url = api_url(settings)
    if path.exists():
        saved = json.loads(path.read_text())
        tenant = store.authenticate(saved.get("apiKey", ""))
        if tenant is not None and tenant.tenant_id == saved.get("tenantId"):
            credentials = DevCredentials(url=url, tenant_id=tenant.tenant_id, api_key=saved["apiKey"])
            _write_credentials(path, credentials)
            return credentials
    tenant, key = store.add(DEV_TENANT, allow_private_callbacks=True)
    credentials = DevCredentials(url=url, tenant_id=tenant.tenant_id, api_key=key)
    _write_credentials(path, credentials)
    return credentials


def _write_credentials(path: Path, credentials: DevCredentials) -> None:
    write_private(path, json.dumps(credentials.to_json(), indent=2) + "\n")
