"""The embedded backend: ClickHouse inside this process through chDB.

chDB hosts one engine per process, bound to one data directory. Any number of
connections to that directory may be open (each keeps its own current database), but
opening a second directory while the first is in use fails; that failure is reported as
a ``ProjectionError`` naming both paths.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlencode

import chdb.session
import pyarrow as pa

from brigade.errors import ProjectionError
from projections.backends.arrow import to_arrow_table
from projections.backends.binding import (
    check_rows,
    column_lengths,
    format_params,
    quote_identifier,
    quote_table,
    split_table,
)
from projections.backends.decoding import decode_json_compact
from projections.types import Params, Row

# Applied to this connection only. UTC makes tz-less DateTime columns read and print the
# same on every host; the JSON settings keep NaN/inf, decimals and tuples lossless in
# the JSONCompact results we decode.
_CONNECTION_SETTINGS = {
    "session_timezone": "UTC",
    "output_format_json_quote_64bit_integers": "0",
    "output_format_json_quote_decimals": "1",
    "output_format_json_quote_denormals": "1",
    "output_format_json_named_tuples_as_objects": "0",
    "output_format_json_validate_utf8": "1",
}

# chDB's Python() table function finds its argument by name, searching the calling
# Python frames' locals and globals; _insert_arrow binds the batch to this local name.
_BATCH_NAME = "brigade_insert_batch"


class ChdbClickHouse:
    """A :class:`projections.types.ClickHouse` on chDB, data under ``path``.

    Calls are serialised by a lock, so one instance may be shared between threads.
    """

    def __init__(self, path: str | Path, *, database: str = "brigade", readonly: bool = False) -> None:
        """Open (creating if needed) the data directory ``path`` and the ``database``.

        With ``readonly`` the connection runs with ClickHouse's ``readonly=1``: reads only,
        no DDL, no writes, no setting changes (not even back to writable), no table
        functions; the database must already exist.

        Raises:
            ProjectionError: chDB is already bound to another directory in this process,
                or the directory cannot be opened.
        """
        self.path = Path(path).absolute()
        self.database = database
        self._lock = threading.Lock()
        self._session: _Session | None = _open_session(self.path, readonly=readonly)
        self._types: dict[str, dict[str, str]] = {}
        if not readonly:
            self.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        self.execute(f"USE {quote_identifier(database)}")

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement and discard any output."""
        self._types.clear()  # the statement may have changed a table insert_columns knows
        self._run(sql, "Null", params)

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a query and return its rows as tuples."""
        return decode_json_compact(self._run(sql, "JSONCompact", params))[1]

    def query_dicts(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as ``{column: value}`` dicts."""
        names, rows = decode_json_compact(self._run(sql, "JSONCompact", params))
        return [dict(zip(names, row, strict=True)) for row in rows]

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert column-wise through an Arrow table and chDB's ``Python()`` table function.

        Columns may be Python sequences or pyarrow arrays. Measured here with 20 batches
        of 10,000 job-event rows into a MergeTree: ~590,000 rows/s from Python lists,
        ~990,000 rows/s from pyarrow arrays; ``FORMAT JSONEachRow`` manages ~171,000
        and ``VALUES`` ~4,000.
        """
        if column_lengths(columns) == 0:
            return
        batch = to_arrow_table(columns, self._column_types(table, columns))
        names = ", ".join(quote_identifier(name) for name in columns)
        sql = f"INSERT INTO {quote_table(table)} ({names}) SELECT {names} FROM Python({_BATCH_NAME})"
        self._insert_arrow(sql, batch)

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Insert row-wise; transposed to columns and sent through :meth:`insert_columns`."""
        check_rows(rows, column_names)
        columns = {name: [row[index] for row in rows] for index, name in enumerate(column_names)}
        self.insert_columns(table, columns)

    def query_bytes(self, sql: str, fmt: str, params: Mapping[str, str] | None = None) -> bytes:
        """Run ``sql`` and return chDB's raw output in format ``fmt`` (``JSONCompact``, ``Null``...).

        ``params`` are already in ClickHouse's text form (see
        :func:`projections.backends.binding.format_params`); this is what the API's operator
        endpoint serves to :class:`projections.backends.proxy.ProxyClickHouse`.

        Raises:
            ProjectionError: the statement failed or the connection is closed.
        """
        self._types.clear()  # as in execute: the statement may have changed a table
        return self._send(sql, fmt, dict(params or {}))

    def close(self) -> None:
        """Close this connection; the engine stops once its last connection closes."""
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            session.close()

    def _column_types(self, table: str, columns: Mapping[str, Sequence[Any]]) -> dict[str, str]:
        # Cached per table; a column we have not seen means the table changed under us.
        types = self._types.get(table)
        if types is None or not types.keys() >= columns.keys():
            database, name = split_table(table)
            rows = self.query(
                "SELECT name, type FROM system.columns WHERE database = {db:String} AND table = {t:String}",
                {"db": database or self.database, "t": name},
            )
            types = self._types[table] = {column: type_name for column, type_name in rows}
        return types

    def _insert_arrow(self, sql: str, brigade_insert_batch: pa.Table) -> None:
        # The parameter's name is the one Python() in ``sql`` looks up in this frame.
        self._run(sql, "Null", None)

    def _run(self, sql: str, fmt: str, params: Params | None) -> bytes:
        return self._send(sql, fmt, format_params(params))

    def _send(self, sql: str, fmt: str, bound: dict[str, str]) -> bytes:
        with self._lock:
            if self._session is None:
                raise ProjectionError("the chDB connection is closed")
            try:
                result = self._session.query(sql, fmt, params=bound)
            except RuntimeError as exc:  # chdb's ChdbError is a RuntimeError
                raise ProjectionError(f"chDB failed on {_head(sql)}: {exc}") from exc
        return result.bytes()


class _Result(Protocol):
    def bytes(self) -> bytes: ...


class _Session(Protocol):
    """The part of ``chdb.session.Session`` used here (chdb ships no annotations)."""

    def query(self, sql: str, fmt: str, *, params: dict[str, str]) -> _Result: ...

    def close(self) -> None: ...


def _open_session(path: Path, *, readonly: bool = False) -> _Session:
    if "?" in str(path):
        raise ProjectionError(f"chDB data path {str(path)!r} must not contain '?'")
    try:
        session: _Session = chdb.session.Session(  # type: ignore[no-untyped-call]
            # readonly goes last: once set, the connection may change no other setting.
            f"{path}?{urlencode({**_CONNECTION_SETTINGS, **({'readonly': '1'} if readonly else {})})}"
        )
        return session
    except RuntimeError as exc:
        raise ProjectionError(
            f"chDB cannot open {path}: one process hosts one chDB data directory, "
            f"so close every connection to the other one first ({exc})"
        ) from exc


def _head(sql: str) -> str:
    text = " ".join(sql.split())
    return repr(text if len(text) <= 120 else text[:117] + "...")
