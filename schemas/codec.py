"""Avro single-object encoding of Brigade records, through fastavro.

Wire format: ``C3 01`` magic, the writer schema's 8-byte little-endian CRC-64-AVRO
fingerprint, then the Avro binary body. Readers look the writer schema up by fingerprint
and resolve it into the newest version they know, as a schema registry would.
"""

from __future__ import annotations

import dataclasses
import io
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any, TypeVar

from fastavro import schemaless_reader, schemaless_writer

from brigade.errors import DecodeError, SchemaError
from schemas.records import NESTED_TYPES, RECORD_TYPES
from schemas.registry import Registry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
_HEADER_SIZE = 10
T = TypeVar("T")


def camel(name: str) -> str:
    """``job_id`` → ``jobId``: Python field name to Avro field name."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, slots=True)
class _Shape:
    """How one Python record class maps to its Avro record."""

    cls: type
    fields: tuple[tuple[str, str, _Shape | None], ...]  # (python name, avro name, nested)

    def to_avro(self, record: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for py_name, avro_name, nested in self.fields:
            value = getattr(record, py_name)
            out[avro_name] = nested.to_avro(value) if nested is not None else value
        return out

    def from_avro(self, data: dict[str, Any]) -> Any:
        kwargs: dict[str, Any] = {}
        for py_name, avro_name, nested in self.fields:
            value = data[avro_name]
            kwargs[py_name] = nested.from_avro(value) if nested is not None else value
        return self.cls(**kwargs)


@cache
def _shape(cls: type) -> _Shape:
    hints = typing.get_type_hints(cls)
    nested_classes = set(NESTED_TYPES.values())
    fields = []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        nested = _shape(hint) if hint in nested_classes else None
        fields.append((item.name, camel(item.name), nested))
    return _Shape(cls, tuple(fields))


class Codec:
    """Encodes records to single-object Avro and decodes them back into records."""

    def __init__(self, registry: Registry | None = None) -> None:
        self._registry = registry or default_registry()
        self._name_of = {cls: name for name, cls in RECORD_TYPES.items()}
        self._writers: dict[type, tuple[SchemaVersion, _Shape]] = {}
        for name, cls in RECORD_TYPES.items():
            self._writers[cls] = (self._registry.latest(name), _shape(cls))

    def encode(self, record: object) -> bytes:
        """Encode ``record`` with the newest schema of its type.

        Raises:
            SchemaError: the record's type has no schema, or a field does not fit it.
        """
        try:
            schema, shape = self._writers[type(record)]
        except KeyError as exc:
            raise SchemaError(f"{type(record).__name__} has no Avro schema") from exc
        buffer = io.BytesIO()
        buffer.write(MAGIC)
        buffer.write(schema.fingerprint_bytes)
        try:
            schemaless_writer(buffer, schema.parsed, shape.to_avro(record))
        except (ValueError, TypeError, AttributeError, KeyError) as exc:
            raise SchemaError(f"{schema.full_name}: record does not fit schema: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes) -> Any:
        """Decode single-object bytes into the Python record of the writer's type.

        Raises:
            DecodeError: the bytes are not a Brigade record; carries them and the reason.
        """
        writer = self._writer_of(data)
        reader = self._registry.latest(writer.full_name)
        buffer = io.BytesIO(data)
        buffer.seek(_HEADER_SIZE)
        try:
            if reader.fingerprint == writer.fingerprint:
                body = schemaless_reader(buffer, writer.parsed, None)
            else:
                body = schemaless_reader(buffer, writer.parsed, reader.parsed)
        except Exception as exc:
            raise DecodeError(f"{writer.full_name}: body does not decode: {exc!r}", raw=data) from exc
        if buffer.tell() != len(data):
            raise DecodeError(f"{writer.full_name}: {len(data) - buffer.tell()} trailing bytes", raw=data)
        assert isinstance(body, dict)
        return _shape(RECORD_TYPES[writer.full_name]).from_avro(body)

    def decode_as(self, data: bytes, expected: type[T]) -> T:
        """Decode and check that the record is an ``expected``; raise ``DecodeError`` if not."""
        record = self.decode(data)
        if not isinstance(record, expected):
            raise DecodeError(
                f"expected {expected.__name__}, got {type(record).__name__}", raw=data
            )
        return record

    def full_name(self, record_type: type) -> str:
        """The Avro full name of a record class."""
        return self._name_of[record_type]

    def _writer_of(self, data: bytes) -> SchemaVersion:
        if len(data) < _HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (bad magic or too short)", raw=data)
        value = int.from_bytes(data[2:_HEADER_SIZE], "little")
        writer = self._registry.by_fingerprint(value)
        if writer is None:
            raise DecodeError(f"unknown writer schema fingerprint {value:#018x}", raw=data)
        if writer.full_name not in RECORD_TYPES:
            raise DecodeError(f"{writer.full_name} is not a top-level record", raw=data)
        return writer
