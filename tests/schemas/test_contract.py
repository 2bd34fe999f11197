"""The Avro schemas and the Python records cannot drift, and every change stays compatible."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from schemas.codec import camel
from schemas.compat import check_registry, incompatibilities
from schemas.records import NESTED_TYPES, RECORD_TYPES
from schemas.registry import SCHEMA_DIR, Registry, default_registry


def _avro_fields(schema: dict[str, object]) -> dict[str, object]:
    return {f["name"]: f for f in schema["fields"]}  # type: ignore[attr-defined]


def _named(schema: dict[str, object], full_name: str) -> dict[str, object] | None:
    """Find a nested named record anywhere inside ``schema``."""
    if f"{schema.get('namespace', '')}.{schema.get('name')}" == full_name:
        return schema
    for item in schema.get("fields", []):  # type: ignore[attr-defined]
        kind = item["type"]
        if isinstance(kind, dict) and kind.get("type") == "record":
            found = _named(kind, full_name)
            if found:
                return found
    return None


def test_every_schema_file_has_a_python_record() -> None:
    assert set(default_registry().names()) == set(RECORD_TYPES)


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_python_record_fields_match_newest_schema(name: str) -> None:
    schema = default_registry().latest(name).raw
    python_fields = {camel(f.name) for f in dataclasses.fields(RECORD_TYPES[name])}
    assert python_fields == set(_avro_fields(schema))


@pytest.mark.parametrize("nested", sorted(NESTED_TYPES))
def test_nested_records_are_identical_wherever_they_appear(nested: str) -> None:
    definitions = [
        json.dumps(found, sort_keys=True)
        for name in default_registry().names()
        if (found := _named(default_registry().latest(name).raw, nested)) is not None
    ]
    assert definitions, nested
    assert len(set(definitions)) == 1
    python_fields = {camel(f.name) for f in dataclasses.fields(NESTED_TYPES[nested])}
    assert python_fields == set(_avro_fields(json.loads(definitions[0])))


def test_registry_versions_are_fully_compatible() -> None:
    assert check_registry(Registry.load(SCHEMA_DIR)) == []


def test_compatibility_check_catches_a_field_without_default(tmp_path: Path) -> None:
    raw = default_registry().latest("brigade.events.JobCancelled").raw
    broken = json.loads(json.dumps(raw))
    broken["fields"].append({"name": "requiredNote", "type": "string"})
    (tmp_path / "brigade.events.JobCancelled.v1.avsc").write_text(json.dumps(raw))
    (tmp_path / "brigade.events.JobCancelled.v2.avsc").write_text(json.dumps(broken))
    registry = Registry.load(tmp_path)
    old, new = registry.versions("brigade.events.JobCancelled")
    problems = incompatibilities(old, new)
    assert len(problems) == 1
    assert "v2 cannot read v1" in problems[0]


def test_compatibility_check_catches_a_removed_enum_symbol(tmp_path: Path) -> None:
    raw = default_registry().latest("brigade.work.WorkOutcome").raw
    narrowed = json.loads(json.dumps(raw))
    kind = next(f for f in narrowed["fields"] if f["name"] == "kind")
    kind["type"]["symbols"] = ["started"]
    (tmp_path / "brigade.work.WorkOutcome.v1.avsc").write_text(json.dumps(raw))
    (tmp_path / "brigade.work.WorkOutcome.v2.avsc").write_text(json.dumps(narrowed))
    old, new = Registry.load(tmp_path).versions("brigade.work.WorkOutcome")
    assert any("cannot read v1" in p for p in incompatibilities(old, new, samples=200))
