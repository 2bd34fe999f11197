"""The generated readers agree with fastavro on every schema, and fail where it fails."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fastavro import schemaless_reader, schemaless_writer
from fastavro.utils import generate_many
from hypothesis import given
from hypothesis import strategies as st

from brigade.errors import DecodeError
from schemas.codec import MAGIC, Codec, _shape, camel
from schemas.decoders import Unsupported, record_reader
from schemas.records import NESTED_TYPES, RECORD_TYPES, DeadLetter, Envelope, JobSucceeded
from schemas.registry import SchemaVersion, default_registry

CLASSES = {**RECORD_TYPES, **NESTED_TYPES}
VERSIONS = [v for name in sorted(RECORD_TYPES) for v in default_registry().versions(name)]
# The codec reads through a generated reader only what the newest version wrote; an older
# writer's body is resolved by fastavro into the newest record.
NEWEST = [default_registry().latest(name) for name in sorted(RECORD_TYPES)]


def _encode(version: SchemaVersion, data: dict[str, Any]) -> bytes:
    buffer = io.BytesIO()
    schemaless_writer(buffer, version.parsed, data)
    return buffer.getvalue()


def _fastavro(version: SchemaVersion, body: bytes) -> Any:
    decoded = schemaless_reader(io.BytesIO(body), version.parsed, None)
    assert isinstance(decoded, dict)
    return _shape(RECORD_TYPES[version.full_name]).from_avro(decoded)


@pytest.mark.parametrize("version", NEWEST, ids=lambda v: f"{v.full_name}.v{v.version}")
def test_generated_reader_equals_fastavro(version: SchemaVersion) -> None:
    read = record_reader(version.raw, CLASSES, camel)
    for data in generate_many(version.parsed, 50):
        body = _encode(version, data)
        ours, end = read(body, 0)
        assert end == len(body)
        theirs = _fastavro(version, body)
        assert ours == theirs and repr(ours) == repr(theirs)


@pytest.mark.parametrize("version", VERSIONS, ids=lambda v: f"{v.full_name}.v{v.version}")
def test_every_truncation_is_a_decode_error(version: SchemaVersion) -> None:
    codec = Codec()
    for data in generate_many(version.parsed, 5):
        whole = MAGIC + version.fingerprint_bytes + _encode(version, data)
        for cut in range(10, len(whole)):
            with pytest.raises(DecodeError) as caught:
                codec.decode(whole[:cut])
            assert caught.value.raw == whole[:cut]


@given(
    sequence=st.integers(min_value=-(2**63), max_value=2**63 - 1),
    text=st.text(),
    latency=st.floats(allow_nan=False),
    micros=st.integers(min_value=-(10**15), max_value=10**16),
)
def test_edge_values_read_as_fastavro_reads_them(
    sequence: int, text: str, latency: float, micros: int
) -> None:
    version = default_registry().latest("brigade.events.JobSucceeded")
    at = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=micros)
    record = JobSucceeded(
        envelope=Envelope(event_id=text, job_id="j", tenant_id=text, occurred_at=at, sequence=sequence),
        attempt=sequence, model=text, latency_ms=latency, result_inline=text or None,
    )
    body = _encode(version, _shape(JobSucceeded).to_avro(record))
    ours, end = record_reader(version.raw, CLASSES, camel)(body, 0)
    assert end == len(body) and ours == _fastavro(version, body)


def test_arrays_in_several_blocks_including_sized_ones() -> None:
    version = default_registry().latest("brigade.dlq.DeadLetter")
    record = DeadLetter(source_topic="t", partition=1, offset=2, raw=b"\x00\xff", reason="r",
                        occurred_at=datetime(2026, 1, 1, tzinfo=UTC), errors=["a", "b", "c"])
    body = _encode(version, _shape(DeadLetter).to_avro(record))
    one_block = b"\x06\x02a\x02b\x02c\x00"  # count 3, three strings, end
    assert one_block in body
    # count -2 with a byte size (4), then count 1, then the end: the same three items
    blocks = b"\x03\x08\x02a\x02b" + b"\x02\x02c" + b"\x00"
    ours, _ = record_reader(version.raw, CLASSES, camel)(body.replace(one_block, blocks), 0)
    assert ours == _fastavro(version, body.replace(one_block, blocks)) == record


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
        record_reader(schema, CLASSES, camel)
