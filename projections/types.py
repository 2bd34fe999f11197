"""What the projections package offers its callers: the ClickHouse adapter's shape.

Only ``typing`` is imported at run time; everything else is for the type checker.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol, TypeAlias

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

#: Values for ``{name:Type}`` placeholders, keyed by placeholder name.
Params: TypeAlias = "Mapping[str, Any]"

#: One result row, in the order of the query's columns.
Row: TypeAlias = "tuple[Any, ...]"


class ClickHouse(Protocol):
    """One connection to a ClickHouse database, embedded (chDB) or remote (a server).

    SQL names its parameters with server-side placeholders, ``{name:Type}``; values are
    bound by the engine, never spliced into the text, so a quote in a value stays data.
    SQL must not carry its own ``FORMAT`` clause. Every engine failure surfaces as
    :class:`brigade.errors.ProjectionError` with the engine's exception as its cause.

    Result values are plain Python: integers as ``int``, ``Float*`` as ``float``,
    ``String``/``LowCardinality(String)``/``Enum*`` as ``str``, ``UUID`` as
    ``uuid.UUID``, ``Date*`` as ``date``, ``DateTime*`` as timezone-aware ``datetime``,
    ``Decimal*`` as ``Decimal``, ``Nullable`` NULLs as ``None``, ``Array`` as ``list``,
    ``Tuple`` as ``tuple`` and ``Map`` as ``dict``. Naive datetimes passed as parameters
    or inserted are taken as UTC.
    """

    @property
    def database(self) -> str:
        """The database unqualified table names resolve in; created on connect."""
        ...

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement (DDL, ``INSERT ... SELECT``, mutations) and discard any output."""
        ...

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a query and return its rows as tuples."""
        ...

    def query_dicts(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as ``{column: value}`` dicts."""
        ...

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Insert column-wise (the fast path): ``{column name: values}``, equal lengths.

        Columns left out take their table defaults.
        """
        ...

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Insert row-wise: each row holds one value per name in ``column_names``."""
        ...

    def close(self) -> None:
        """Release the connection; further calls raise ``ProjectionError``. Idempotent."""
        ...
