"""Turn chDB's ``JSONCompact`` output into the Python values clickhouse-connect returns.

JSON carries each column's ClickHouse type in ``meta``, so every value is converted by
its declared type rather than guessed. Measured on 50,000 rows of five columns, parsing
JSONCompact and converting took ~0.19 s where chDB's ``ArrowTable`` plus ``to_pylist``
took ~0.28 s, and Arrow loses types on the way (``DateTime`` arrives as ``uint32``,
``Enum`` as its integer).
"""

from __future__ import annotations

import datetime as dt
import json
import struct
from collections.abc import Callable
from decimal import Decimal
from functools import lru_cache
from ipaddress import ip_address
from typing import Any
from uuid import UUID
from zoneinfo import ZoneInfo

Convert = Callable[[Any], Any]

_FLOAT32 = struct.Struct("<f")
_INTEGER_PREFIXES = ("Int", "UInt")


def decode_json_compact(payload: bytes) -> tuple[list[str], list[tuple[Any, ...]]]:
    """Column names and typed rows of one ``JSONCompact`` result (empty for no result)."""
    if not payload:
        return [], []
    document = json.loads(payload)
    names = [column["name"] for column in document["meta"]]
    converters = [converter(column["type"]) for column in document["meta"]]
    rows = [
        tuple(conv(value) for conv, value in zip(converters, row, strict=True)) for row in document["data"]
    ]
    return names, rows


@lru_cache(maxsize=512)
def converter(type_name: str) -> Convert:
    """A function from a JSON value of ClickHouse type ``type_name`` to a Python value."""
    name, args = parse_type(type_name)
    wrapper = _WRAPPERS.get(name)
    if wrapper is not None:
        return wrapper(args)
    if name.startswith(_INTEGER_PREFIXES):
        return int  # 128/256-bit integers may arrive quoted
    return _SCALARS.get(name) or _scalar_with_args(name, args)


def parse_type(type_name: str) -> tuple[str, list[str]]:
    """``("Map", ["String", "UInt8"])`` from ``"Map(String, UInt8)"``; top level only."""
    type_name = type_name.strip()
    open_at = type_name.find("(")
    if open_at < 0 or not type_name.endswith(")"):
        return type_name, []
    return type_name[:open_at], _split_args(type_name[open_at + 1 : -1])


def _split_args(text: str) -> list[str]:
    args: list[str] = []
    depth, start, quoted = 0, 0, False
    for index, char in enumerate(text):
        if char == "'" and (index == 0 or text[index - 1] != "\\"):
            quoted = not quoted
        elif not quoted and char in "()":
            depth += 1 if char == "(" else -1
        elif not quoted and depth == 0 and char == ",":
            args.append(text[start:index].strip())
            start = index + 1
    args.append(text[start:].strip())
    return args


def _nullable(args: list[str]) -> Convert:
    inner = converter(args[0])
    return lambda value: None if value is None else inner(value)


def _array(args: list[str]) -> Convert:
    inner = converter(args[0])
    return lambda value: [inner(item) for item in value]


def _tuple(args: list[str]) -> Convert:
    inners = [converter(_strip_element_name(arg)) for arg in args]
    return lambda value: tuple(conv(item) for conv, item in zip(inners, value, strict=True))


def _map(args: list[str]) -> Convert:
    # JSON object keys are always strings, so numeric keys go back through int().
    key_name, _ = parse_type(args[0])
    key = int if key_name.startswith(_INTEGER_PREFIXES) else converter(args[0])
    value_conv = converter(args[1])
    return lambda value: {key(k): value_conv(v) for k, v in value.items()}


def _strip_element_name(element: str) -> str:
    # "name Type" in a named tuple; a bare type has no space outside parentheses.
    head, _, rest = element.partition(" ")
    return rest if rest and "(" not in head else element


_WRAPPERS: dict[str, Callable[[list[str]], Convert]] = {
    "Nullable": _nullable,
    "LowCardinality": lambda args: converter(args[0]),
    "SimpleAggregateFunction": lambda args: converter(args[-1]),
    "Array": _array,
    "Tuple": _tuple,
    "Map": _map,
}


def _float32(value: Any) -> float:
    # Round through float32 so 0.1 comes back as 0.10000000149011612, as numpy (and so
    # clickhouse-connect) reports it.
    number = float(value)
    result: float = _FLOAT32.unpack(_FLOAT32.pack(number))[0]
    return result


def _text_float(value: Any) -> float:
    return float(value)  # "nan" and "inf" arrive as strings


def _identity(value: Any) -> Any:
    return value


_SCALARS: dict[str, Convert] = {
    "Float64": _text_float,
    "Float32": _float32,
    "BFloat16": _float32,
    "UUID": UUID,
    "Date": dt.date.fromisoformat,
    "Date32": dt.date.fromisoformat,
    "IPv4": ip_address,
    "IPv6": ip_address,
    "Bool": bool,
}


def _scalar_with_args(name: str, args: list[str]) -> Convert:
    if name == "DateTime":
        return _datetime(args[0] if args else None)
    if name == "DateTime64":
        return _datetime(args[1] if len(args) > 1 else None)
    if name.startswith("Decimal"):
        return Decimal
    if name == "FixedString":
        return lambda value: value.rstrip("\0")
    return _identity


def _datetime(zone_literal: str | None) -> Convert:
    zone = _zone(zone_literal.strip("'") if zone_literal else "UTC")

    def convert(value: str) -> dt.datetime:
        return _parse_datetime(value).replace(tzinfo=zone)

    return convert


def _parse_datetime(text: str) -> dt.datetime:
    # Python keeps microseconds; DateTime64(7..9) digits beyond them are dropped.
    head, dot, fraction = text.partition(".")
    return dt.datetime.fromisoformat(f"{head}.{fraction[:6]}" if dot else head)


def _zone(name: str) -> dt.tzinfo:
    return dt.UTC if name in ("UTC", "Etc/UTC") else ZoneInfo(name)
