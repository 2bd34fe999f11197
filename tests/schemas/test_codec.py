"""Round trips of every record type through single-object Avro."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from datetime import UTC, datetime
from pathlib import Path

import pytest
from fastavro import schemaless_writer
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from brigade.errors import DecodeError, SchemaError
from schemas.codec import LEGACY_FINGERPRINT_METRIC, MAGIC, Codec, _shape, builder
from schemas.records import (
    RECORD_TYPES,
    Envelope,
    JobCancelled,
    JobSpec,
    JobSucceeded,
    SubmitJob,
    WorkOutcome,
)
from schemas.registry import Registry, SchemaVersion, default_registry
from testkit.records import generated_records

codec = Codec()


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_every_record_type_round_trips(name: str) -> None:
    for record in generated_records(name, 20):
        assert codec.decode(codec.encode(record)) == record


def test_header_is_magic_and_little_endian_fingerprint() -> None:
    record = _sample_succeeded("x")
    encoded = codec.encode(record)
    assert encoded[:2] == MAGIC == b"\xc3\x01"
    # SchemaNormalization.parsingFingerprint64 of JobSucceeded.v1 in Apache Avro Java 1.12.2
    # (schema versions never change); tests/interop checks every schema against Java live.
    assert struct.unpack("<Q", encoded[2:10])[0] == 0x9E6D82635EDBAD0F


def test_legacy_big_endian_headers_still_decode_and_are_counted() -> None:
    # Given two codecs of one process sharing its metrics registry, and a message whose
    # fingerprint is in the byte order Brigade wrote before following the specification
    metrics = CollectorRegistry()
    readers = Codec(metrics=metrics), Codec(metrics=metrics)
    record = _sample_succeeded("legacy")
    spec_order = codec.encode(record)
    legacy = spec_order[:2] + spec_order[2:10][::-1] + spec_order[10:]
    # When both orders are decoded, the legacy one twice (the second from the cache)
    for reader in readers:
        assert reader.decode(spec_order) == record
        assert reader.decode(legacy) == record
    assert readers[0].decode(legacy) == record
    # Then every legacy message, and only those, is counted once, by schema
    labels = {"schema": "brigade.events.JobSucceeded"}
    count = metrics.get_sample_value(f"{LEGACY_FINGERPRINT_METRIC}_total", labels)
    assert count == 3
    # and writers never use the legacy order
    assert readers[1].encode(record) == spec_order != legacy


def test_the_record_type_is_read_from_the_header_once_the_codec_has_seen_it() -> None:
    # Given a fresh codec (no reader cached yet) and a message in either byte order
    metrics = CollectorRegistry()
    reader = Codec(metrics=metrics)
    encoded = codec.encode(_sample_succeeded("peek"))
    legacy = encoded[:2] + encoded[2:10][::-1] + encoded[10:]
    # Then a header it has not decoded yet names nothing, and garbage never names a type
    assert reader.record_type(encoded) is None
    assert reader.record_type(b"not avro") is None
    # When it decoded them once, the header alone names the type, even with a bad body
    reader.decode(encoded)
    reader.decode(legacy)
    assert reader.record_type(encoded) is JobSucceeded
    assert reader.record_type(legacy[:10] + b"\xff") is JobSucceeded
    # and peeking counts no legacy decode
    labels = {"schema": "brigade.events.JobSucceeded"}
    count = metrics.get_sample_value(f"{LEGACY_FINGERPRINT_METRIC}_total", labels)
    assert count == 1


def test_an_unknown_fingerprint_in_either_order_is_a_decode_error() -> None:
    encoded = codec.encode(_sample_succeeded("x"))
    unknown = encoded[:2] + bytes(8) + encoded[10:]
    with pytest.raises(DecodeError, match="unknown writer schema fingerprint 0x0000000000000000"):
        codec.decode(unknown)


@given(
    job_id=st.text(min_size=1),
    result=st.one_of(st.none(), st.text()),
    latency=st.floats(allow_nan=False, allow_infinity=False),
    sequence=st.integers(min_value=0, max_value=2**62),
)
def test_job_succeeded_round_trips(job_id: str, result: str | None, latency: float, sequence: int) -> None:
    record = JobSucceeded(
        envelope=Envelope(
            event_id="e", job_id=job_id, tenant_id="t",
            occurred_at=datetime(2026, 1, 2, 3, 4, 5, 678901, tzinfo=UTC), sequence=sequence,
        ),
        attempt=1, model="m", latency_ms=latency, result_inline=result,
    )
    assert codec.decode(codec.encode(record)) == record


@pytest.mark.parametrize(
    ("raw", "reason"),
    [
        (b"", "bad magic"),
        (b"{\"json\": true}", "bad magic"),
        (MAGIC + b"\x00" * 8 + b"body", "unknown writer schema"),
    ],
)
def test_undecodable_bytes_raise_decode_error_with_raw(raw: bytes, reason: str) -> None:
    with pytest.raises(DecodeError, match=reason) as caught:
        codec.decode(raw)
    assert caught.value.raw == raw


def test_truncated_body_is_a_decode_error() -> None:
    encoded = codec.encode(_sample_succeeded("job"))
    with pytest.raises(DecodeError) as caught:
        codec.decode(encoded[:-5])
    assert caught.value.raw == encoded[:-5]


def test_trailing_garbage_is_a_decode_error() -> None:
    with pytest.raises(DecodeError, match="trailing"):
        codec.decode(codec.encode(_sample_succeeded("job")) + b"\x00")


def test_decode_as_checks_the_type() -> None:
    with pytest.raises(DecodeError, match="expected SubmitJob"):
        codec.decode_as(codec.encode(_sample_succeeded("job")), SubmitJob)


def test_unknown_record_type_is_a_schema_error() -> None:
    with pytest.raises(SchemaError):
        codec.encode(object())


def test_record_not_fitting_schema_is_a_schema_error() -> None:
    spec = JobSpec(job_id="j", tenant_id="t", payload_sha256="s", created_at=datetime.now(UTC))
    bad = SubmitJob(command_id=None, spec=spec)  # type: ignore[arg-type]
    with pytest.raises(SchemaError, match="SubmitJob"):
        codec.encode(bad)


def test_older_writer_is_resolved_into_newest_reader(tmp_path: Path) -> None:
    # Given a registry holding every real schema plus an older JobCancelled without `reason`
    registry, writer = _registry_with_older_cancelled(tmp_path)
    # When a message written with the older schema is decoded
    decoded = Codec(registry).decode(_older_cancelled(writer))
    # Then it resolves into today's record with the default filled in
    assert isinstance(decoded, JobCancelled)
    assert decoded.envelope.job_id == "j"
    assert decoded.reason is None


def test_an_outcome_from_a_worker_before_started_at_reads_without_it() -> None:
    # Given a final outcome as a worker of WorkOutcome v1 wrote it (no `startedAt`)
    v1, newest = default_registry().versions("brigade.work.WorkOutcome")[0], \
        default_registry().latest("brigade.work.WorkOutcome")
    assert v1.version == 1 and newest.version > 1
    buffer = io.BytesIO()
    buffer.write(MAGIC + v1.fingerprint_bytes)
    schemaless_writer(buffer, v1.parsed, {
        "outcomeId": "o", "jobId": "j", "tenantId": "t", "attempt": 1, "kind": "succeeded",
        "occurredAt": datetime.now(UTC), "worker": "w"})
    # When today's codec reads it
    decoded = codec.decode(buffer.getvalue())
    # Then it is today's record, its start not reported (a `started` outcome preceded it)
    assert isinstance(decoded, WorkOutcome)
    assert (decoded.job_id, decoded.kind, decoded.started_at) == ("j", "succeeded", None)


def _registry_with_older_cancelled(tmp_path: Path) -> tuple[Registry, SchemaVersion]:
    for name in RECORD_TYPES:
        raw = default_registry().latest(name).raw
        (tmp_path / f"{name}.v1.avsc").write_text(json.dumps(raw))
    older = json.loads(json.dumps(default_registry().latest("brigade.events.JobCancelled").raw))
    older["fields"] = [f for f in older["fields"] if f["name"] != "reason"]
    (tmp_path / "brigade.events.JobCancelled.v0.avsc").write_text(json.dumps(older))
    registry = Registry.load(tmp_path)
    return registry, registry.versions("brigade.events.JobCancelled")[0]


def _older_cancelled(writer: SchemaVersion) -> bytes:
    buffer = io.BytesIO()
    buffer.write(MAGIC + writer.fingerprint_bytes)
    envelope = {"eventId": "e", "jobId": "j", "tenantId": "t",
                "occurredAt": datetime.now(UTC), "sequence": 1, "traceparent": None}
    schemaless_writer(buffer, writer.parsed, {"envelope": envelope})
    return buffer.getvalue()


def _sample_succeeded(job_id: str) -> JobSucceeded:
    return JobSucceeded(
        envelope=Envelope(event_id="e", job_id=job_id, tenant_id="t",
                          occurred_at=datetime.now(UTC), sequence=3),
        attempt=1, model="m", latency_ms=1.5,
    )


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_wire_bytes_are_fastavros_with_the_registry_schema(name: str) -> None:
    # The codec's own (marked, cached) schemas must not change a single byte on the wire.
    schema = default_registry().latest(name)
    for record in generated_records(name, 10):
        buffer = io.BytesIO()
        schemaless_writer(buffer, schema.parsed, _shape(RECORD_TYPES[name]).to_avro(record))
        assert codec.encode(record) == MAGIC + schema.fingerprint_bytes + buffer.getvalue()


@pytest.mark.parametrize("name", sorted(RECORD_TYPES))
def test_the_generated_builders_equal_the_constructor(name: str) -> None:
    # Both generated paths: the decoder's (``_shape.from_avro``, which made ``record``) and
    # the public ``builder``
    cls = RECORD_TYPES[name]
    for record in generated_records(name, 5):
        values = {f.name: getattr(record, f.name) for f in dataclasses.fields(cls)}
        rebuilt = cls(**values)
        assert rebuilt == record and repr(rebuilt) == repr(record)  # every slot is set
        built = builder(cls)(**values)
        assert type(built) is cls and built == rebuilt and repr(built) == repr(record)
        with pytest.raises(dataclasses.FrozenInstanceError):
            record.__setattr__(dataclasses.fields(cls)[0].name, None)


def test_an_older_writer_keeps_resolving_after_the_reader_is_cached(tmp_path: Path) -> None:
    registry, writer = _registry_with_older_cancelled(tmp_path)
    ours = Codec(registry)
    newest = ours.encode(JobCancelled(envelope=_sample_succeeded("n").envelope, reason="r"))
    for _ in range(3):  # first sight builds the reader, then it is reused
        old = ours.decode(_older_cancelled(writer))
        assert isinstance(old, JobCancelled) and old.reason is None
        assert ours.decode(newest).reason == "r"

