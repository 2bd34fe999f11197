"""Python columns to an Arrow table shaped by the target ClickHouse column types.

pyarrow's own inference is right for most values but not all: a ``dict`` becomes a
struct, not a Map (chDB then rejects a Nullable Map), an integer from 2**63 up
overflows int64, and an all-empty or all-None column has no type at all. The target
column's declared type settles each of these; where a type has no mapping here, or the
values do not fit it (say, date strings for a DateTime64), inference is used and the
engine casts on insert.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from functools import lru_cache
from typing import Any

import pyarrow as pa

from brigade.errors import ProjectionError
from projections.backends.decoding import parse_type

_PLAIN: dict[str, pa.DataType] = {
    "String": pa.string(),
    "FixedString": pa.string(),
    "Enum8": pa.string(),
    "Enum16": pa.string(),
    "Int8": pa.int8(),
    "Int16": pa.int16(),
    "Int32": pa.int32(),
    "Int64": pa.int64(),
    "UInt8": pa.uint8(),
    "UInt16": pa.uint16(),
    "UInt32": pa.uint32(),
    "UInt64": pa.uint64(),
    "Float32": pa.float32(),
    "Float64": pa.float64(),
    "Bool": pa.bool_(),
    "Date": pa.date32(),
    "Date32": pa.date32(),
    "DateTime": pa.timestamp("s", tz="UTC"),
}


def to_arrow_table(columns: Mapping[str, Sequence[Any]], types: Mapping[str, str]) -> pa.Table:
    """An Arrow table of ``columns``, typed by ``types`` (``{column: ClickHouse type}``).

    Raises:
        ProjectionError: a column cannot be converted at all.
    """
    arrays = {}
    for name, values in columns.items():
        try:
            arrays[name] = _column(values, types.get(name))
        except (pa.ArrowException, TypeError, ValueError, OverflowError) as exc:
            raise ProjectionError(f"insert column {name!r} cannot be converted to Arrow: {exc}") from exc
    return pa.table(arrays)


def _column(values: Sequence[Any], type_name: str | None) -> pa.Array | pa.ChunkedArray:
    if isinstance(values, pa.Array | pa.ChunkedArray):
        return values
    target = arrow_type(type_name) if type_name else None
    if target is not None:
        try:
            return pa.array(values, type=target)
        except (pa.ArrowException, TypeError, ValueError, OverflowError):
            pass  # fall through: inferred types are cast by the engine on insert
    return pa.array(values)


@lru_cache(maxsize=512)
def arrow_type(type_name: str) -> pa.DataType | None:
    """The Arrow type to build for ClickHouse type ``type_name``; ``None`` to infer."""
    name, args = parse_type(type_name)
    if name in ("Nullable", "LowCardinality"):
        return arrow_type(args[0])
    if name == "DateTime64":
        # Naive datetimes are read as UTC wall time by pyarrow, aware ones converted.
        unit = "us" if int(args[0]) <= 6 else "ns"
        return pa.timestamp(unit, tz="UTC")
    if name == "Array":
        item = arrow_type(args[0])
        return None if item is None else pa.list_(item)
    if name == "Map":
        key, value = arrow_type(args[0]), arrow_type(args[1])
        return None if key is None or value is None else pa.map_(key, value)
    return _PLAIN.get(name)
