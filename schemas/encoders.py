"""Avro binary bodies written straight from Brigade's record classes.

fastavro's writer takes a dict, so the codec first turned each record into one and fastavro
then walked the schema for every message: together about a fifth of the API's CPU per job
under batch load (docs/benchmarks.md). For schemas it covers, the codec uses a writer built
here once per schema instead: straight-line code per record that reads the slots and joins
the encoded fields. The output is byte for byte fastavro's (``tests/schemas`` writes
generated samples of every schema with both and compares them).

The writers cover what the decoders cover (:mod:`schemas.decoders`). A value they do not
take (a naive datetime, an int given for a timestamp, a symbol outside the enum, a long
beyond 64 bits) raises ``TypeError``, ``ValueError``, ``AttributeError`` or
``OverflowError``; the codec then writes the record with fastavro, which either accepts it
with its own rules or names the problem.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from struct import Struct
from typing import Any

from schemas.decoders import SchemaContext, Unsupported

Write = Callable[[Any], bytes]
"""Encodes one value to its Avro binary form."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_INT64 = 1 << 63
_ONE_BYTE = tuple(bytes([z]) for z in range(0x80))  # zigzag values that fit one byte
_SIZES = 1024
_DOUBLE = Struct("<d").pack
_FLOAT = Struct("<f").pack
WRITE_ERRORS = (TypeError, ValueError, AttributeError, OverflowError, KeyError)
"""What a writer raises for a value it does not take (see the module docstring)."""


def record_writer(
    schema: Mapping[str, Any], classes: Mapping[str, type], avro_name: Callable[[str], str]
) -> Write:
    """A writer for the record ``schema``, reading instances of ``classes[full name]``.

    ``avro_name`` maps a class's field name to its Avro field name (``job_id`` → ``jobId``).

    Raises:
        Unsupported: a type, logical type or union shape that is not covered.
    """
    return _record(schema, "", SchemaContext(classes, avro_name))


def _long(value: int) -> bytes:
    if 0 <= value < 0x40:  # most numbers are small and non-negative: one byte
        return _ONE_BYTE[value << 1]
    if not -_INT64 <= value < _INT64:
        raise OverflowError(f"{value} does not fit a long")
    zigzag = (value << 1) ^ (value >> 63)
    out = bytearray()
    while zigzag >= 0x80:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


_SIZE = tuple(_long(n) for n in range(_SIZES))  # length prefixes of most strings


def _bytes(value: bytes) -> bytes:
    if not isinstance(value, bytes | bytearray):
        raise TypeError(f"expected bytes, got {type(value).__name__}")
    return _long(len(value)) + value


def _string(value: str) -> bytes:
    raw = value.encode()
    size = len(raw)
    return (_ONE_BYTE[size << 1] if size < 0x40 else _long(size)) + raw


def _boolean(value: bool) -> bytes:
    return b"\x01" if value else b"\x00"  # as fastavro: truthiness


def _double(value: float) -> bytes:
    return _DOUBLE(value)


def _float(value: float) -> bytes:
    return _FLOAT(value)


def _null(value: None) -> bytes:
    if value is not None:
        raise TypeError(f"expected None, got {type(value).__name__}")
    return b""


def _timestamp_micros(value: datetime) -> bytes:
    # Aware datetimes only: subtracting a naive one raises TypeError, and fastavro (which
    # reads naive datetimes as local time) writes it instead.
    delta = value - _EPOCH
    return _long((delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds)


def _last_timestamp() -> Write:
    """``_timestamp_micros`` remembering its last datetime: a batch's jobs share one arrival time."""
    last: list[Any] = [None, b""]

    def write_timestamp(value: datetime) -> bytes:
        if value is not last[0]:  # datetimes are immutable: the same object, the same bytes
            last[1] = _timestamp_micros(value)
            last[0] = value
        return last[1]  # type: ignore[no-any-return]

    return write_timestamp


_PRIMITIVES: dict[str, Write] = {
    "null": _null, "boolean": _boolean, "int": _long, "long": _long, "float": _float,
    "double": _double, "string": _string, "bytes": _bytes,
}


def _writer(kind: Any, namespace: str, context: SchemaContext) -> Write:
    if isinstance(kind, list):
        return _union(kind, namespace, context)
    if isinstance(kind, str):
        if kind in _PRIMITIVES:
            return _PRIMITIVES[kind]
        raise Unsupported(f"named type reference {kind!r}")
    logical = kind.get("logicalType")
    if logical is not None:
        if logical == "timestamp-micros" and kind["type"] == "long":
            return _last_timestamp()
        raise Unsupported(f"logical type {logical!r}")
    base = kind["type"]
    if base == "record":
        return _record(kind, namespace, context)
    if base == "enum":
        return _enum(tuple(kind["symbols"]))
    if base == "array":
        return _array(_writer(kind["items"], namespace, context))
    if base == "map":
        return _map(_writer(kind["values"], namespace, context))
    return _writer(base, namespace, context)  # {"type": "string"} and the like


def _union(branches: list[Any], namespace: str, context: SchemaContext) -> Write:
    if len(branches) != 2 or "null" not in branches:
        raise Unsupported(f"union {branches!r}")
    null_index = branches.index("null")
    null_tag, value_tag = _long(null_index), _long(1 - null_index)
    write_value = _writer(branches[1 - null_index], namespace, context)
    if null_index == 0 and write_value is _string:
        return _optional_string  # written inline by the record's code

    def write_optional(value: Any) -> bytes:
        return null_tag if value is None else value_tag + write_value(value)

    return write_optional


def _optional_string(value: str | None) -> bytes:
    return b"\x00" if value is None else b"\x02" + _string(value)


def _enum(symbols: tuple[str, ...]) -> Write:
    index = {symbol: _long(i) for i, symbol in enumerate(symbols)}

    def write_enum(value: str) -> bytes:
        try:
            return index[value]
        except (KeyError, TypeError) as exc:  # TypeError: an unhashable value
            raise ValueError(f"{value!r} is not one of {symbols}") from exc

    return write_enum


def _array(write_item: Write) -> Write:
    def write_array(value: list[Any]) -> bytes:
        if not isinstance(value, list | tuple):
            raise TypeError(f"expected a list, got {type(value).__name__}")
        if not value:
            return b"\x00"
        return b"".join((_long(len(value)), *map(write_item, value), b"\x00"))  # one block

    return write_array


def _map(write_value: Write) -> Write:
    def write_map(value: dict[str, Any]) -> bytes:
        if not value:
            return b"\x00"  # before the type check: fastavro also takes any empty mapping
        parts = [_long(len(value))]
        for key, item in value.items():
            parts += (_string(key), write_value(item))
        parts.append(b"\x00")
        return b"".join(parts)

    return write_map


def _record(schema: Mapping[str, Any], namespace: str, context: SchemaContext) -> Write:
    namespace = schema.get("namespace", namespace)
    full_name = schema["name"] if "." in schema["name"] else f"{namespace}.{schema['name']}".lstrip(".")
    cls = context.classes.get(full_name)
    if cls is None:
        raise Unsupported(f"no class for record {full_name}")
    names = {context.avro_name(name): name for name in cls.__dataclass_fields__}  # type: ignore[attr-defined]
    if sorted(names) != sorted(field["name"] for field in schema["fields"]):
        raise Unsupported(f"{full_name}: schema and class have different fields")
    steps = tuple(
        (_writer(field["type"], namespace, context), names[field["name"]]) for field in schema["fields"]
    )
    return _compile_record(full_name, cls, steps)


# The commonest field types written inline in the generated code: a call per field cost as
# much as the encoding. ``{v}`` is the field's value, ``{t}`` and ``{n}`` names for temporaries.
_INLINE = {
    _string: "SIZE[{n}] if ({n} := len({t} := {v}.encode())) < SIZES else long({n}), {t}",
    _boolean: "b'\\x01' if {v} else b'\\x00'",
    _optional_string: "b'\\x00' if ({t} := {v}) is None else b'\\x02' + string({t})",
    _long: "SIZE[{t}] if 0 <= ({t} := {v}) < SIZES else long({t})",
}


def _inline(write: Write, index: int, attribute: str) -> str:
    template = _INLINE.get(write, "write_{i}({v})")
    return template.format(v=f"record.{attribute}", t=f"text_{index}", n=f"size_{index}", i=index)


def _compile_record(full_name: str, cls: type, steps: tuple[tuple[Write, str], ...]) -> Write:
    """Straight-line code for one record: the encoded fields, joined once."""
    scope: dict[str, Any] = {"cls": cls, "SIZE": _SIZE, "SIZES": _SIZES, "long": _long, "string": _string}
    calls = []
    for index, (write, attribute) in enumerate(steps):
        scope[f"write_{index}"] = write
        calls.append(f"        {_inline(write, index, attribute)},")
    lines = [
        "def write_record(record):",
        "    if type(record) is not cls:",  # the nested record's slots must be the class's
        f"        raise TypeError('expected {cls.__name__}, got ' + type(record).__name__)",
        "    return b''.join((",
        *calls,
        "    ))",
    ]
    exec(compile("\n".join(lines), f"<avro writer {full_name}>", "exec"), scope)  # the code just above
    return scope["write_record"]  # type: ignore[no-any-return]
