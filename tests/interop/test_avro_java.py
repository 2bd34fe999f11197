"""Brigade's Avro wire format against the reference: Apache Avro's Java implementation.

Java decodes what Brigade writes (``BinaryMessageDecoder`` with every schema file in a
``SchemaStore.Cache``), Brigade decodes what Java writes (``BinaryMessageEncoder``), and every
fingerprint equals ``SchemaNormalization.parsingFingerprint64``. Nothing here trusts Brigade's
own idea of the format: Java is the oracle.
"""

from __future__ import annotations

import io
import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import schemaless_writer
from fastavro.utils import generate_many

from schemas.codec import MAGIC, Codec
from schemas.records import RECORD_TYPES
from schemas.registry import default_registry
from tests.interop.java_tools import SCHEMA_DIR, AvroJava

SAMPLES_PER_SCHEMA = 4
codec = Codec()
Samples = list[tuple[str, bytes, Any]]


def _samples() -> Samples:
    """(full name, Avro body, record) for generated values of every record schema."""
    out = []
    for name in sorted(RECORD_TYPES):
        version = default_registry().latest(name)
        for data in generate_many(version.parsed, SAMPLES_PER_SCHEMA):
            buffer = io.BytesIO()
            schemaless_writer(buffer, version.parsed, data)
            body = buffer.getvalue()
            out.append((name, body, codec.decode(MAGIC + version.fingerprint_bytes + body)))
    return out


@pytest.fixture(scope="module")
def samples() -> Samples:
    return _samples()


@pytest.fixture(scope="module")
def answer(avro_java: AvroJava, samples: Samples) -> dict[str, Any]:
    """One JVM run: Java decodes our messages (both byte orders) and encodes the same values."""
    decode, encode = [], []
    for index, (name, body, record) in enumerate(samples):
        ours = codec.encode(record)
        decode.append({"id": f"spec-{index}", "schema": name, "hex": ours.hex()})
        legacy = ours[:2] + ours[2:10][::-1] + ours[10:]
        decode.append({"id": f"legacy-{index}", "schema": name, "hex": legacy.hex()})
        encode.append({"id": f"java-{index}", "schema": name, "hex": body.hex()})
    return avro_java.run(decode=decode, encode_body=encode)


def test_every_fingerprint_is_javas_parsing_fingerprint64(answer: dict[str, Any]) -> None:
    ours = {f"{v.full_name}.v{v.version}.avsc": v.fingerprint
            for name in default_registry().names() for v in default_registry().versions(name)}
    javas = {name: int(value) for name, value in answer["fingerprints"].items()}
    assert set(javas) == {path.name for path in SCHEMA_DIR.glob("*.avsc")} == set(ours)
    assert ours == javas


def test_java_decodes_every_message_we_write(answer: dict[str, Any], samples: Samples) -> None:
    decoded = {item["id"]: item for item in answer["decoded"]}
    for index, (name, _, record) in enumerate(samples):
        item = decoded[f"spec-{index}"]
        assert "error" not in item, (name, item)
        assert item["schema"] == name
        # Java's re-encoding reads back to the same record (maps may come back in another order)
        assert codec.decode(bytes.fromhex(item["reencoded"])) == record


def test_java_refuses_the_legacy_byte_order(answer: dict[str, Any]) -> None:
    # Why the migration exists: the old big-endian header names no schema for Java.
    errors = [item.get("error", "") for item in answer["decoded"] if item["id"].startswith("legacy-")]
    assert errors and all(error.startswith("MissingSchemaException") for error in errors), errors[:3]


def test_we_decode_every_message_java_writes(answer: dict[str, Any], samples: Samples) -> None:
    encoded = {item["id"]: item for item in answer["encoded"]}
    for index, (name, _, record) in enumerate(samples):
        item = encoded[f"java-{index}"]
        assert "error" not in item, (name, item)
        javas = bytes.fromhex(item["hex"])
        assert javas[:10] == codec.encode(record)[:10]
        assert codec.decode(javas) == record


def test_a_cancel_built_by_java_from_json_decodes(avro_java: AvroJava) -> None:
    job_id = str(uuid.uuid4())
    datum = cancel_json(job_id, "acme")
    request = {"id": "c", "schema": "brigade.commands.CancelJob", "json": datum}
    [item] = avro_java.run(encode_json=[request])["encoded"]
    cancel = codec.decode(bytes.fromhex(item["hex"]))
    assert (cancel.job_id, cancel.tenant_id, cancel.reason) == (job_id, "acme", "from java")


def cancel_json(job_id: str, tenant_id: str) -> str:
    """A CancelJob in Avro's JSON encoding, as a Java client would build it."""
    micros = int(datetime.now(UTC).timestamp() * 1_000_000)
    return json.dumps({"commandId": str(uuid.uuid4()), "jobId": job_id, "tenantId": tenant_id,
                       "reason": {"string": "from java"}, "requestedAt": micros, "traceparent": None})
