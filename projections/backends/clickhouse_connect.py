"""The server backend: a ClickHouse server over HTTP(S) through clickhouse-connect."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, cast
from urllib.parse import unquote, urlsplit

import clickhouse_connect
from clickhouse_connect.driver.client import Client
from clickhouse_connect.driver.exceptions import ClickHouseError

from brigade.errors import ConfigError, ProjectionError
from projections.backends.binding import (
    check_rows,
    column_lengths,
    format_params,
    quote_identifier,
    split_table,
)
from projections.types import Params, Row

_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*):[^}]+\}")
# Errors clickhouse-connect raises for values it cannot serialise for a column.
_INSERT_ERRORS = (ClickHouseError, TypeError, ValueError, OverflowError, AttributeError)


class ClickHouseConnect:
    """A :class:`projections.types.ClickHouse` on a clickhouse-connect client.

    Calls are serialised by a lock: a clickhouse-connect client holds one session.
    """

    def __init__(self, client: Client, *, database: str = "brigade") -> None:
        """Use ``client``, creating ``database`` and making it the default.

        Raises:
            ProjectionError: the database cannot be created.
        """
        self.database = database
        self._client: Client | None = client
        self._lock = threading.Lock()
        self.execute(f"CREATE DATABASE IF NOT EXISTS {quote_identifier(database)}")
        client.database = database

    @classmethod
    def from_url(cls, url: str, *, database: str | None = None) -> ClickHouseConnect:
        """Connect to ``http(s)://user:password@host:port/database``.

        ``database`` wins over the URL's path, which wins over ``"brigade"``.

        Raises:
            ConfigError: the URL is not an http(s) URL with a host.
            ProjectionError: the server cannot be reached.
        """
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"clickhouse_url {url!r} must look like http(s)://user:password@host:port/db")
        secure = parts.scheme == "https"
        try:
            client = clickhouse_connect.get_client(
                host=parts.hostname,
                port=parts.port or (8443 if secure else 8123),
                username=unquote(parts.username or "default"),
                password=unquote(parts.password or ""),
                secure=secure,
                tz_mode="aware",
            )
        except (ClickHouseError, OSError) as exc:
            raise ProjectionError(f"cannot reach ClickHouse at {parts.hostname}: {exc}") from exc
        return cls(client, database=database or parts.path.strip("/") or "brigade")

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement and discard any output."""
        with self._guard(sql) as client:
            client.command(sql, parameters=_bind(sql, params))

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a query and return its rows as tuples."""
        with self._guard(sql) as client:
            result = client.query(sql, parameters=_bind(sql, params))
        return cast("list[Row]", result.result_rows)  # a list of tuples, typed loosely

    def query_dicts(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as ``{column: value}`` dicts."""
        with self._guard(sql) as client:
            result = client.query(sql, parameters=_bind(sql, params))
        names = result.column_names
        return [dict(zip(names, row, strict=True)) for row in result.result_rows]

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert column-wise with clickhouse-connect's native (binary) insert."""
        if column_lengths(columns) == 0:
            return
        self._insert(table, list(columns.values()), list(columns), column_oriented=True)

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Insert row-wise with clickhouse-connect's native (binary) insert."""
        check_rows(rows, column_names)
        if rows:
            self._insert(table, rows, list(column_names), column_oriented=False)

    def close(self) -> None:
        """Close the client's connection pool."""
        with self._lock:
            client, self._client = self._client, None
        if client is not None:
            client.close()

    def _insert(
        self, table: str, data: Sequence[Sequence[Any]], names: list[str], *, column_oriented: bool
    ) -> None:
        database, name = split_table(table)
        with self._guard(f"INSERT INTO {table}", _INSERT_ERRORS) as client:
            client.insert(
                name,
                data,
                column_names=names,
                database=database or self.database,
                column_oriented=column_oriented,
            )

    @contextmanager
    def _guard(self, sql: str, errors: tuple[type[Exception], ...] = (ClickHouseError,)) -> Iterator[Client]:
        # Hold the lock, hand out the open client and wrap the engine's errors.
        with self._lock:
            if self._client is None:
                raise ProjectionError("the ClickHouse connection is closed")
            try:
                yield self._client
            except errors as exc:
                text = " ".join(sql.split())[:120]
                raise ProjectionError(f"ClickHouse failed on {text!r}: {exc}") from exc


class _Bound:
    """A parameter already in ClickHouse's text form.

    clickhouse-connect formats parameters itself, differently from chDB (it escapes
    strings but drops microseconds from plain datetimes, for one). It passes objects it
    does not know through ``str()``, so wrapping the text from ``format_params`` makes
    both backends send identical bytes.
    """

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __str__(self) -> str:
        return self.text


def _bind(sql: str, params: Params | None) -> dict[str, _Bound] | None:
    # Only placeholders the SQL names: given parameters but no {name:Type} in the text,
    # clickhouse-connect would fall back to client-side "%(name)s" formatting.
    used = set(_PLACEHOLDER.findall(sql))
    bound = {name: _Bound(text) for name, text in format_params(params).items() if name in used}
    return bound or None
