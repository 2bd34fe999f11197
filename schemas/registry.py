"""The schema registry: every version of every Avro schema, found by fingerprint.

``schemas/avro`` is the registry. A file is named ``<full name>.v<N>.avsc``; versions
are never deleted, so a reader can resolve any writer schema that ever produced a message.
"""

from __future__ import annotations

import json
import re
import struct
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

from fastavro import parse_schema
from fastavro.schema import fingerprint, to_parsing_canonical_form

from brigade.errors import SchemaError

SCHEMA_DIR = Path(__file__).with_name("avro")
_FILE_NAME = re.compile(r"^(?P<name>[\w.]+)\.v(?P<version>\d+)\.avsc$")


@dataclass(frozen=True, slots=True)
class SchemaVersion:
    """One version of one schema, parsed and fingerprinted."""

    full_name: str
    version: int
    raw: dict[str, Any]
    parsed: Any
    fingerprint: int
    """CRC-64-AVRO of the Parsing Canonical Form, as an unsigned 64-bit number."""

    @property
    def fingerprint_bytes(self) -> bytes:
        """The 8 bytes that follow the single-object magic: the fingerprint, little-endian."""
        return struct.pack("<Q", self.fingerprint)

    @property
    def legacy_fingerprint_bytes(self) -> bytes:
        """The fingerprint big-endian, as Brigade wrote it before it followed the specification."""
        return struct.pack(">Q", self.fingerprint)


class Registry:
    """All schema versions in a folder, indexed by fingerprint and by name."""

    def __init__(self, versions: list[SchemaVersion]) -> None:
        self._by_fingerprint = {v.fingerprint: v for v in versions}
        by_name: dict[str, list[SchemaVersion]] = {}
        for version in sorted(versions, key=lambda v: (v.full_name, v.version)):
            by_name.setdefault(version.full_name, []).append(version)
        self._by_name = by_name

    @classmethod
    def load(cls, folder: Path = SCHEMA_DIR) -> Registry:
        """Read every ``*.avsc`` in ``folder``; raise ``SchemaError`` on a malformed file."""
        versions = [_load_file(path) for path in sorted(folder.glob("*.avsc"))]
        if not versions:
            raise SchemaError(f"no schemas found in {folder}")
        return cls(versions)

    def by_fingerprint(self, value: int) -> SchemaVersion | None:
        """The schema version a writer used, or None when unknown."""
        return self._by_fingerprint.get(value)

    def latest(self, full_name: str) -> SchemaVersion:
        """The newest version of ``full_name``: what this code writes and reads into."""
        try:
            return self._by_name[full_name][-1]
        except KeyError as exc:
            raise SchemaError(f"no schema named {full_name!r} in the registry") from exc

    def versions(self, full_name: str) -> list[SchemaVersion]:
        """Every version of ``full_name``, oldest first."""
        return list(self._by_name.get(full_name, []))

    def names(self) -> list[str]:
        """Every schema full name in the registry."""
        return sorted(self._by_name)


@cache
def default_registry() -> Registry:
    """The registry shipped with Brigade (loaded once per process)."""
    return Registry.load()


def _load_file(path: Path) -> SchemaVersion:
    match = _FILE_NAME.match(path.name)
    if match is None:
        raise SchemaError(f"{path.name}: schema files are named <full name>.v<N>.avsc")
    try:
        raw = json.loads(path.read_text())
        parsed = parse_schema(raw, _write_hint=False)
    except (ValueError, Exception) as exc:  # fastavro raises several unrelated types
        raise SchemaError(f"{path.name}: not a valid Avro schema: {exc}") from exc
    full_name = f"{raw.get('namespace', '')}.{raw['name']}".lstrip(".")
    if full_name != match["name"]:
        raise SchemaError(f"{path.name}: file name does not match schema name {full_name!r}")
    canonical = to_parsing_canonical_form(parsed)
    # fastavro gives the fingerprint as the hex of its little-endian bytes, not of the number.
    value = int.from_bytes(bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), "little")
    return SchemaVersion(full_name, int(match["version"]), raw, parsed, value)
