"""Avro single-object encoding of Brigade records, through fastavro.

Wire format: ``C3 01`` magic, the writer schema's 8-byte little-endian CRC-64-AVRO
fingerprint, then the Avro binary body. Readers look the writer schema up by fingerprint
and resolve it into the newest version they know, as a schema registry would.

Migration: Brigade once wrote the fingerprint big-endian. For one release readers still
accept that order, looked up only when the specification's order names no schema and
counted in ``brigade_avro_legacy_fingerprint_decodes_total``; writers use only the
specification's order (docs/event-contract.md).

Speed (measured, see docs/event-contract.md): fastavro re-parses a schema on every call
unless the schema carries its "parsed" marker, which the registry's copies do not (they
are parsed for fingerprinting); the codec keeps its own marked copies, one per writer
fingerprint, and skips resolution when the writer is the newest version. Records are
built and taken apart by small functions generated once per class from its dataclass
fields (``_Shape``), about twice as fast as a generic ``cls(**kwargs)`` loop. Encoding
skips both the dict and fastavro where it can: a writer generated per schema
(:mod:`schemas.encoders`) reads the record's slots and writes fastavro's exact bytes.
"""

from __future__ import annotations

import dataclasses
import io
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from functools import cache
from typing import Any, NamedTuple, TypeVar
from weakref import WeakKeyDictionary

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from prometheus_client import CollectorRegistry, Counter

from brigade.errors import DecodeError, SchemaError
from schemas.decoders import Read, Unsupported, record_reader
from schemas.encoders import WRITE_ERRORS, Write, record_writer
from schemas.records import NESTED_TYPES, RECORD_TYPES, Record
from schemas.registry import Registry, SchemaVersion, default_registry

MAGIC = b"\xc3\x01"
_HEADER_SIZE = 10
T = TypeVar("T")
LEGACY_FINGERPRINT_METRIC = "brigade_avro_legacy_fingerprint_decodes"

# Every codec of a process counts into one series per metrics registry (a registry refuses
# a second counter of the same name), so the counters are shared through this cache.
_LEGACY_COUNTERS: WeakKeyDictionary[CollectorRegistry, Counter] = WeakKeyDictionary()


def legacy_fingerprint_counter(metrics: CollectorRegistry) -> Counter:
    """The counter of messages decoded through a big-endian (pre-specification) fingerprint."""
    counter = _LEGACY_COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(LEGACY_FINGERPRINT_METRIC,
                          "Messages whose writer fingerprint was found only in the legacy big-endian order",
                          ["schema"], registry=metrics)
        _LEGACY_COUNTERS[metrics] = counter
    return counter


def camel(name: str) -> str:
    """``job_id`` → ``jobId``: Python field name to Avro field name."""
    head, *rest = name.split("_")
    return head + "".join(part.title() for part in rest)


@dataclass(frozen=True, slots=True)
class _Shape:
    """How one Python record class maps to its Avro record.

    ``to_avro`` and ``from_avro`` are generated from ``fields`` (see ``_compile``).
    """

    cls: type
    fields: tuple[tuple[str, str, _Shape | None], ...]  # (python name, avro name, nested)
    to_avro: Callable[[Any], dict[str, Any]]
    from_avro: Callable[[dict[str, Any]], Any]


@cache
def _shape(cls: type) -> _Shape:
    hints = typing.get_type_hints(cls)
    nested_classes = set(NESTED_TYPES.values())
    fields = []
    for item in dataclasses.fields(cls):
        hint = hints[item.name]
        nested = _shape(hint) if hint in nested_classes else None
        fields.append((item.name, camel(item.name), nested))
    return _compile(cls, tuple(fields))


def _compile(cls: type, fields: tuple[tuple[str, str, _Shape | None], ...]) -> _Shape:
    """Generate the shape's two converters as straight-line code.

    ``from_avro`` creates the instance with ``object.__new__`` and fills each slot through
    its descriptor: the records are frozen dataclasses whose ``__init__`` sets every
    field with ``object.__setattr__`` behind keyword arguments, which costs twice as much.
    Every field is in ``data`` (the reader schema fills defaults), so none is left unset.
    """
    names: dict[str, Any] = {"cls": cls, "new": object.__new__}
    to_lines, from_lines = [], []
    for index, (py_name, avro_name, nested) in enumerate(fields):
        names[f"set_{index}"] = _slot(cls, py_name).__set__
        value, attribute = f"data[{avro_name!r}]", f"record.{py_name}"
        if nested is not None:
            names[f"nested_{index}"] = nested
            value = f"nested_{index}.from_avro({value})"
            attribute = f"nested_{index}.to_avro({attribute})"
        from_lines.append(f"    set_{index}(record, {value})")
        to_lines.append(f"        {avro_name!r}: {attribute},")
    source = "\n".join([
        "def to_avro(record):", "    return {", *to_lines, "    }",
        "def from_avro(data):", "    record = new(cls)", *from_lines, "    return record",
    ])
    exec(compile(source, f"<codec shape {cls.__name__}>", "exec"), names)  # the code generated just above
    return _Shape(cls, fields, names["to_avro"], names["from_avro"])


def builder(cls: Callable[..., T]) -> Callable[..., T]:
    """A constructor for the record class ``cls`` taking every field by keyword, no defaults.

    The same instance as ``cls(**fields)`` (``tests/schemas`` compares them) at less than
    half the cost, for the same reason as ``_Shape.from_avro``: a frozen dataclass's
    ``__init__`` sets each field through ``object.__setattr__``. Ingress builds one
    ``JobSpec`` per job, so the difference shows at batch rates.
    """
    names = [item.name for item in dataclasses.fields(cls)]  # type: ignore[arg-type]
    scope: dict[str, Any] = {"cls": cls, "new": object.__new__}
    lines = [f"def build(*, {', '.join(names)}):", "    record = new(cls)"]
    for index, name in enumerate(names):
        scope[f"set_{index}"] = _slot(cls, name).__set__  # type: ignore[arg-type]
        lines.append(f"    set_{index}(record, {name})")
    lines.append("    return record")
    exec(compile("\n".join(lines), f"<record builder {cls.__name__}>", "exec"), scope)  # the code above
    return scope["build"]  # type: ignore[no-any-return]


def _slot(cls: type, name: str) -> types.MemberDescriptorType:
    slot = getattr(cls, name)  # inherited slots (the circuit events) live on a base class
    if not isinstance(slot, types.MemberDescriptorType):
        raise SchemaError(f"{cls.__name__}.{name}: records must be slots dataclasses")
    return slot


@dataclass(frozen=True, slots=True)
class _Reader:
    """How to decode bodies written with one writer schema."""

    writer: SchemaVersion
    writer_schema: Any  # parsed with fastavro's marker, so it is not re-parsed per call
    reader_schema: Any  # None when the writer is the newest version: no resolution
    shape: _Shape
    direct: Read | None  # the writer is the newest: read straight into the record


def _direct_reader(version: SchemaVersion) -> Read | None:
    try:
        return record_reader(version.raw, {**RECORD_TYPES, **NESTED_TYPES}, camel)
    except Unsupported:
        return None


class _Writer(NamedTuple):
    """How to encode one record type: its newest schema, and the direct writer if it has one."""

    version: SchemaVersion
    schema: Any  # parsed with fastavro's marker
    shape: _Shape
    direct: Write | None
    header: bytes  # magic and fingerprint, computed once


def _direct_writer(version: SchemaVersion) -> Write | None:
    try:
        return record_writer(version.raw, {**RECORD_TYPES, **NESTED_TYPES}, camel)
    except Unsupported:
        return None


def _marked(version: SchemaVersion) -> Any:
    return parse_schema(version.raw)


class Codec:
    """Encodes records to single-object Avro and decodes them back into records."""

    def __init__(self, registry: Registry | None = None, *, metrics: CollectorRegistry | None = None) -> None:
        """Use ``registry`` (Brigade's schemas by default); count legacy headers in ``metrics``."""
        self._registry = registry or default_registry()
        self._legacy = legacy_fingerprint_counter(metrics or CollectorRegistry())
        self._legacy_readers: dict[bytes, _Reader] = {}  # by big-endian fingerprint bytes
        self._name_of = {cls: name for name, cls in RECORD_TYPES.items()}
        self._writers: dict[type, _Writer] = {}
        for name, cls in RECORD_TYPES.items():
            latest = self._registry.latest(name)
            header = MAGIC + latest.fingerprint_bytes
            self._writers[cls] = _Writer(latest, _marked(latest), _shape(cls), _direct_writer(latest), header)
        self._readers: dict[bytes, _Reader] = {}  # by fingerprint bytes, filled on first use

    def encode(self, record: object) -> bytes:
        """Encode ``record`` with the newest schema of its type.

        Raises:
            SchemaError: the record's type has no schema, or a field does not fit it.
        """
        try:
            version, schema, shape, direct, header = self._writers[type(record)]
        except KeyError as exc:
            raise SchemaError(f"{type(record).__name__} has no Avro schema") from exc
        if direct is not None:
            try:
                return header + direct(record)
            except WRITE_ERRORS:
                pass  # a value the direct writer does not take: fastavro writes it or explains why
        buffer = io.BytesIO()
        buffer.write(header)
        try:
            schemaless_writer(buffer, schema, shape.to_avro(record))
        except WRITE_ERRORS as exc:  # OverflowError too: a long beyond 64 bits
            raise SchemaError(f"{version.full_name}: record does not fit schema: {exc}") from exc
        return buffer.getvalue()

    def decode(self, data: bytes) -> Record:
        """Decode single-object bytes into the Python record of the writer's type.

        Raises:
            DecodeError: the bytes are not a Brigade record; carries them and the reason.
        """
        reader = self._readers.get(data[2:_HEADER_SIZE]) if data[:2] == MAGIC else None
        if reader is None:
            reader = self._reader_of(data)
        if reader.direct is not None:
            return self._read_direct(reader, reader.direct, data)
        buffer = io.BytesIO(data)
        buffer.seek(_HEADER_SIZE)
        try:
            body = schemaless_reader(buffer, reader.writer_schema, reader.reader_schema)
        except Exception as exc:
            raise DecodeError(f"{reader.writer.full_name}: body does not decode: {exc!r}", raw=data) from exc
        extra = len(data) - buffer.tell()
        if extra:
            raise DecodeError(f"{reader.writer.full_name}: {extra} trailing bytes", raw=data)
        assert isinstance(body, dict)
        record: Record = reader.shape.from_avro(body)
        return record

    @staticmethod
    def _read_direct(reader: _Reader, read: Read, data: bytes) -> Record:
        try:
            record, end = read(data, _HEADER_SIZE)
        except Exception as exc:
            raise DecodeError(f"{reader.writer.full_name}: body does not decode: {exc!r}", raw=data) from exc
        if end != len(data):
            problem = "truncated" if end > len(data) else f"{len(data) - end} trailing bytes"
            raise DecodeError(f"{reader.writer.full_name}: {problem}", raw=data)
        decoded: Record = record
        return decoded

    def decode_as(self, data: bytes, expected: type[T]) -> T:
        """Decode and check that the record is an ``expected``; raise ``DecodeError`` if not."""
        record = self.decode(data)
        if not isinstance(record, expected):
            raise DecodeError(
                f"expected {expected.__name__}, got {type(record).__name__}", raw=data
            )
        return record

    def record_type(self, data: bytes) -> type | None:
        """The record class ``data``'s header names, without reading its body.

        ``None`` for a header this codec has not decoded yet (or that names nothing):
        a caller that skips records by type decodes those, which also teaches the codec.
        """
        if data[:2] != MAGIC:
            return None
        header = data[2:_HEADER_SIZE]
        reader = self._readers.get(header) or self._legacy_readers.get(header)
        return None if reader is None else reader.shape.cls

    def full_name(self, record_type: type) -> str:
        """The Avro full name of a record class."""
        return self._name_of[record_type]

    def _reader_of(self, data: bytes) -> _Reader:
        """The reader for ``data``'s writer schema, made and cached on first sight.

        Headers in the legacy byte order land here on every message (the fast path knows
        only the specification's order), which is where they are counted.
        """
        if len(data) < _HEADER_SIZE or data[:2] != MAGIC:
            raise DecodeError("not Avro single-object encoding (bad magic or too short)", raw=data)
        header = data[2:_HEADER_SIZE]
        reader = self._legacy_readers.get(header)
        if reader is None:
            value = int.from_bytes(header, "little")
            writer = self._registry.by_fingerprint(value)
            if writer is not None:
                reader = self._readers[header] = self._new_reader(writer, data)
                return reader
            writer = self._registry.by_fingerprint(int.from_bytes(header, "big"))
            if writer is None:
                raise DecodeError(f"unknown writer schema fingerprint {value:#018x}", raw=data)
            reader = self._legacy_readers[header] = self._new_reader(writer, data)
        self._legacy.labels(reader.writer.full_name).inc()
        return reader

    def _new_reader(self, writer: SchemaVersion, data: bytes) -> _Reader:
        if writer.full_name not in RECORD_TYPES:
            raise DecodeError(f"{writer.full_name} is not a top-level record", raw=data)
        latest = self._registry.latest(writer.full_name)
        newest = latest.fingerprint == writer.fingerprint
        return _Reader(writer, _marked(writer), None if newest else _marked(latest),
                       _shape(RECORD_TYPES[writer.full_name]), _direct_reader(writer) if newest else None)
