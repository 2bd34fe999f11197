"""SQL text safety shared by both backends: parameter values and identifiers.

Parameters stay server-side ``{name:Type}`` placeholders; what travels is each value's
text form, which ClickHouse parses with the placeholder's type. Both backends send the
text made here, so a value means the same thing on chDB and on a server.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from decimal import Decimal
from enum import Enum
from ipaddress import IPv4Address, IPv6Address
from typing import Any
from uuid import UUID

from brigade.errors import ProjectionError

_EPOCH = dt.datetime(1970, 1, 1, tzinfo=dt.UTC)
_TABLE = re.compile(r"(?:([A-Za-z_][A-Za-z0-9_]*)\.)?([A-Za-z_][A-Za-z0-9_]*)")
_PARAM_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")

# Top level, ClickHouse reads a parameter in its "escaped" (TSV) text format; inside an
# Array/Tuple/Map it reads SQL literals. A raw tab or newline is rejected at the top and
# a backslash starts an escape in both, so these are always escaped.
_ESCAPED = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\b": "\\b", "\f": "\\f"})
_QUOTED = str.maketrans({"\\": "\\\\", "'": "\\'", "\t": "\\t", "\n": "\\n", "\r": "\\r", "\0": "\\0"})


def format_params(params: Mapping[str, Any] | None) -> dict[str, str]:
    """The text form of every parameter, ready for the engine.

    Raises:
        ProjectionError: a name is not an identifier or a value has no text form.
    """
    if not params:
        return {}
    for name in params:
        if not _PARAM_NAME.fullmatch(name):
            raise ProjectionError(f"query parameter name {name!r} is not an identifier")
    return {name: format_param(value) for name, value in params.items()}


def format_param(value: Any) -> str:
    """The text ClickHouse parses as ``value`` for a top-level ``{name:Type}`` placeholder.

    ``None`` is NULL, datetimes are exact instants (naive ones are taken as UTC), lists,
    tuples and dicts become Array, Tuple and Map literals.
    """
    if value is None:
        return "\\N"
    if isinstance(value, Enum):
        return format_param(value.value)
    if isinstance(value, str):
        return value.translate(_ESCAPED)
    text = _format_scalar(value)
    return text if text is not None else _format_container(value)


def _format_nested(value: Any) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, Enum):
        return _format_nested(value.value)
    if isinstance(value, str):
        return "'" + value.translate(_QUOTED) + "'"
    text = _format_scalar(value)
    if text is None:
        return _format_container(value)
    # Inside a literal, text-like values need quotes; numbers, booleans and epoch
    # timestamps must not have them.
    return text if isinstance(value, bool | int | float | Decimal | dt.datetime) else f"'{text}'"


def _format_scalar(value: Any) -> str | None:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        return _epoch_text(value)
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, bytes | bytearray):
        return "".join(f"\\x{byte:02x}" for byte in value)
    if isinstance(value, UUID | IPv4Address | IPv6Address):
        return str(value)
    return None


def _format_container(value: Any) -> str:
    if isinstance(value, list):
        return "[" + ", ".join(_format_nested(item) for item in value) + "]"
    if isinstance(value, tuple):
        return "(" + ", ".join(_format_nested(item) for item in value) + ")"
    if isinstance(value, dict):
        pairs = (f"{_format_nested(k)}: {_format_nested(v)}" for k, v in value.items())
        return "{" + ", ".join(pairs) + "}"
    raise ProjectionError(f"cannot bind a {type(value).__name__} as a query parameter")


def _epoch_text(value: dt.datetime) -> str:
    # Seconds since the epoch are the same instant whatever timezone the placeholder's
    # type names, where "YYYY-MM-DD hh:mm:ss" would be read in that timezone. ClickHouse
    # takes a number as a timestamp only from five digits on, hence the zero padding.
    if value.tzinfo is None:
        value = value.replace(tzinfo=dt.UTC)
    delta = value - _EPOCH
    micros = (delta.days * 86_400 + delta.seconds) * 1_000_000 + delta.microseconds
    sign = "-" if micros < 0 else ""
    seconds, fraction = divmod(abs(micros), 1_000_000)
    text = f"{sign}{seconds:05d}"
    return f"{text}.{fraction:06d}" if fraction else text


def quote_identifier(name: str) -> str:
    """``name`` as a backquoted ClickHouse identifier."""
    return "`" + name.replace("\\", "\\\\").replace("`", "\\`") + "`"


def split_table(table: str) -> tuple[str | None, str]:
    """``(database or None, table)`` from ``table`` or ``database.table``.

    Raises:
        ProjectionError: the name is not one or two plain identifiers.
    """
    match = _TABLE.fullmatch(table)
    if match is None:
        raise ProjectionError(f"table name {table!r} must be 'table' or 'database.table'")
    return match.group(1), match.group(2)


def quote_table(table: str) -> str:
    """``table`` or ``database.table`` with each part backquoted."""
    database, name = split_table(table)
    quoted = quote_identifier(name)
    return quoted if database is None else f"{quote_identifier(database)}.{quoted}"


def column_lengths(columns: Mapping[str, Sequence[Any]]) -> int:
    """The common length of ``columns``; 0 for none.

    Raises:
        ProjectionError: the columns differ in length.
    """
    lengths = {name: len(values) for name, values in columns.items()}
    if len(set(lengths.values())) > 1:
        raise ProjectionError(f"insert columns differ in length: {lengths}")
    return next(iter(lengths.values()), 0)


def check_rows(rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
    """Refuse rows whose width differs from ``column_names``.

    Raises:
        ProjectionError: naming the first row of the wrong width.
    """
    width = len(column_names)
    for index, row in enumerate(rows):
        if len(row) != width:
            raise ProjectionError(f"insert row {index} has {len(row)} values for {width} columns")
