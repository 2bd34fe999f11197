"""The generated writers write fastavro's bytes on every schema, and defer to it where they must."""

from __future__ import annotations

import dataclasses
import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import schemaless_writer
from hypothesis import given
from hypothesis import strategies as st

from brigade.errors import SchemaError
from schemas.codec import MAGIC, Codec, _shape, camel
from schemas.decoders import Unsupported
from schemas.encoders import record_writer
from schemas.records import NESTED_TYPES, RECORD_TYPES, Envelope, JobSpec, JobSucceeded, SubmitJob
from schemas.registry import default_registry
from testkit.records import generated_records

CLASSES = {**RECORD_TYPES, **NESTED_TYPES}
NAMES = sorted(RECORD_TYPES)
codec = Codec()
CLASSES_BY_TYPE = {cls: name for name, cls in RECORD_TYPES.items()}


def _fastavro_body(record: Any) -> bytes:
    name = CLASSES_BY_TYPE[type(record)]
    buffer = io.BytesIO()
    data = _shape(RECORD_TYPES[name]).to_avro(record)
    schemaless_writer(buffer, default_registry().latest(name).parsed, data)
    return buffer.getvalue()


@pytest.mark.parametrize("name", NAMES)
def test_every_schema_has_a_direct_writer_that_writes_fastavros_bytes(name: str) -> None:
    version = default_registry().latest(name)
    write = record_writer(version.raw, CLASSES, camel)
    for record in generated_records(name, 50):
        assert write(record) == _fastavro_body(record)


def _spec(text: str, size: int, metadata: dict[str, str], at: datetime) -> JobSpec:
    return JobSpec(
        job_id=text, tenant_id="t", payload_sha256="s" * 64, created_at=at, input=text * 3 or None,
        payload_size=size, max_attempts=size % 2**31, metadata=metadata, deadline=at, priority="interactive",
    )


@given(
    text=st.text(max_size=700),  # x3 in ``input``: lengths past one and two length bytes
    size=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    metadata=st.dictionaries(st.text(max_size=70), st.text(max_size=70), max_size=5),
    micros=st.integers(min_value=-(10**15), max_value=10**16),
)
def test_edge_values_are_written_as_fastavro_writes_them(
    text: str, size: int, metadata: dict[str, str], micros: int
) -> None:
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    command = SubmitJob(command_id=text, spec=_spec(text, size, metadata, at), traceparent=text or None)
    assert codec.encode(command) == MAGIC + _version_bytes(SubmitJob) + _fastavro_body(command)


@given(latency=st.floats(allow_nan=False), sequence=st.integers(min_value=-(2**63), max_value=2**63 - 1))
def test_doubles_and_longs_are_written_as_fastavro_writes_them(latency: float, sequence: int) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    record = JobSucceeded(
        envelope=Envelope(event_id="e", job_id="j", tenant_id="t", occurred_at=at, sequence=sequence),
        attempt=sequence, model="m", latency_ms=latency,
    )
    assert codec.encode(record)[10:] == _fastavro_body(record)


def _version_bytes(cls: type) -> bytes:
    return default_registry().latest(CLASSES_BY_TYPE[cls]).fingerprint_bytes


def test_a_naive_datetime_is_left_to_fastavro() -> None:
    # fastavro reads a naive datetime as local time; the direct writer refuses it and defers.
    spec = _spec("x", 1, {}, datetime(2026, 1, 1))  # naive: the case under test
    command = SubmitJob(command_id="c", spec=spec)
    with pytest.raises(TypeError):
        record_writer(default_registry().latest("brigade.commands.SubmitJob").raw, CLASSES, camel)(command)
    assert codec.encode(command)[10:] == _fastavro_body(command)


@pytest.mark.parametrize("change", [
    {"priority": "urgent"},  # not a symbol of the enum
    {"payload_size": 2**64},  # beyond a long
    {"tenant_id": None},  # a required string
    {"metadata": {"k": 1}},  # a map of strings
])
def test_values_neither_writer_takes_are_schema_errors(change: dict[str, Any]) -> None:
    spec = dataclasses.replace(_spec("x", 1, {}, datetime(2026, 1, 1, tzinfo=UTC)), **change)
    with pytest.raises(SchemaError, match="SubmitJob"):
        codec.encode(SubmitJob(command_id="c", spec=spec))


def test_a_batch_shares_one_timestamp_encoding_without_mixing_two() -> None:
    # The writer remembers its last datetime: a different one must still be written afresh.
    first, second = datetime(2026, 1, 1, tzinfo=UTC), datetime(2027, 1, 1, tzinfo=UTC)
    for at in (first, first, second, first):
        command = SubmitJob(command_id="c", spec=_spec("x", 1, {}, at))
        assert codec.decode(codec.encode(command)) == command


@pytest.mark.parametrize("kind", [
    {"type": "string", "logicalType": "uuid"},
    ["null", "string", "long"],
    "brigade.events.Envelope",
    {"type": "fixed", "name": "F", "size": 4},
])
def test_uncovered_types_are_left_to_fastavro(kind: object) -> None:
    schema = {"type": "record", "name": "JobCancelled", "namespace": "brigade.events",
              "fields": [{"name": "envelope", "type": kind}, {"name": "reason", "type": "string"}]}
    with pytest.raises(Unsupported):
        record_writer(schema, CLASSES, camel)
