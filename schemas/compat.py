"""Schema compatibility, checked the way a schema registry would (FULL = both directions).

Backward: the new schema reads what the old one wrote. Forward: the old schema reads what
the new one writes. Both are checked by resolving real encoded samples, so any rule
fastavro's resolution enforces (missing defaults, type promotions, enum symbols) counts.
"""

from __future__ import annotations

import io
from typing import Any

from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many

from schemas.registry import Registry, SchemaVersion


def _resolves(writer: Any, reader: Any, samples: int) -> str | None:
    for record in generate_many(writer, samples):
        buffer = io.BytesIO()
        schemaless_writer(buffer, writer, record)
        buffer.seek(0)
        try:
            schemaless_reader(buffer, writer, reader)
        except Exception as exc:  # noqa: BLE001 - any resolution failure is the answer
            return f"{type(exc).__name__}: {exc}"
    return None


def incompatibilities(old: SchemaVersion, new: SchemaVersion, *, samples: int = 25) -> list[str]:
    """Why ``new`` is not fully compatible with ``old``; empty when it is."""
    problems = []
    backward = _resolves(old.parsed, new.parsed, samples)
    if backward:
        problems.append(f"{new.full_name} v{new.version} cannot read v{old.version}: {backward}")
    forward = _resolves(new.parsed, old.parsed, samples)
    if forward:
        problems.append(f"{new.full_name} v{old.version} cannot read v{new.version}: {forward}")
    return problems


def check_registry(registry: Registry) -> list[str]:
    """Every incompatibility between any two versions of any schema in ``registry``."""
    problems: list[str] = []
    for name in registry.names():
        versions = registry.versions(name)
        for index, old in enumerate(versions):
            for new in versions[index + 1 :]:
                problems += incompatibilities(old, new)
    return problems
