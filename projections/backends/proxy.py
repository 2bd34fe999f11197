"""Reads through the running API: a ClickHouse for operator commands in the embedded stack.

chDB admits one process per data directory and, while the stack runs, the API holds it.
``ProxyClickHouse`` sends each statement to the API's operator endpoint
(``POST /v1/admin/clickhouse``), which runs it on the API's own connection and answers
chDB's raw ``JSONCompact`` bytes; they are decoded here by the same code the embedded
backend uses, so rows come back typed exactly as from a direct connection.

Limits, by design: inserts are refused (bulk writes belong in a process that owns the
engine), and the database is the one the API's connection uses (``brigade`` by default)
because that connection is shared with the embedded projector and must not be switched.
"""

from __future__ import annotations

import fcntl
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx

from brigade.endpoints import ADMIN_CLICKHOUSE_PATH, api_url, operator_token_path
from brigade.errors import ProjectionError
from projections.backends.binding import format_params
from projections.backends.decoding import decode_json_compact
from projections.types import Params, Row

if TYPE_CHECKING:
    from brigade.settings import Settings

WRITES_REFUSED = (
    "writes through the running API are not supported: stop the stack (Ctrl-C) to rebuild "
    "into chDB, or use a ClickHouse server"
)
# The API opens chDB with connect()'s default database; the proxy can serve no other.
API_DATABASE = "brigade"


class ProxyClickHouse:
    """A :class:`projections.types.ClickHouse` that runs SQL on the API's chDB connection.

    Args:
        api_url: the API's base URL, e.g. ``http://127.0.0.1:8000``.
        token: the operator token (``<data dir>/operator-token``).
        database: the database the API's connection uses; the API refuses any other.
        timeout_s: how long one statement may take, network included.
    """

    def __init__(
        self, api_url: str, token: str, *, database: str = API_DATABASE, timeout_s: float = 300.0
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.database = database
        self._client: httpx.Client | None = httpx.Client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {token}"},
            timeout=httpx.Timeout(timeout_s, connect=5.0),
        )

    def execute(self, sql: str, params: Params | None = None) -> None:
        """Run a statement on the API's connection and discard any output."""
        self._post(sql, params, "Null")

    def query(self, sql: str, params: Params | None = None) -> list[Row]:
        """Run a query and return its rows as tuples."""
        return decode_json_compact(self._post(sql, params, "JSONCompact"))[1]

    def query_dicts(self, sql: str, params: Params | None = None) -> list[dict[str, Any]]:
        """Run a query and return its rows as ``{column: value}`` dicts."""
        names, rows = decode_json_compact(self._post(sql, params, "JSONCompact"))
        return [dict(zip(names, row, strict=True)) for row in rows]

    def insert_columns(self, table: str, columns: Mapping[str, Sequence[Any]]) -> None:
        """Refused: see :data:`WRITES_REFUSED`.

        Raises:
            ProjectionError: always.
        """
        raise ProjectionError(WRITES_REFUSED)

    def insert_rows(self, table: str, rows: Sequence[Sequence[Any]], column_names: Sequence[str]) -> None:
        """Refused: see :data:`WRITES_REFUSED`.

        Raises:
            ProjectionError: always.
        """
        raise ProjectionError(WRITES_REFUSED)

    def close(self) -> None:
        """Close the HTTP client; further calls raise ``ProjectionError``. Idempotent."""
        client, self._client = self._client, None
        if client is not None:
            client.close()

    def _post(self, sql: str, params: Params | None, fmt: str) -> bytes:
        if self._client is None:
            raise ProjectionError("the proxy connection is closed")
        body = {"sql": sql, "params": format_params(params), "format": fmt, "database": self.database}
        try:
            response = self._client.post(ADMIN_CLICKHOUSE_PATH, json=body)
        except httpx.HTTPError as exc:
            raise ProjectionError(f"the API at {self.api_url} did not answer: {exc}") from exc
        if response.status_code in (200, 204):
            return response.content
        raise ProjectionError(f"the API at {self.api_url} refused the query ({response.status_code}): "
                              f"{_message(response)}")


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json()["error"]["message"])
    except (ValueError, KeyError, TypeError):
        return response.text[:500]


def directory_locked(path: str | Path) -> bool:
    """Whether a chDB/ClickHouse engine holds the data directory ``path`` right now.

    The engine keeps an exclusive ``flock`` on ``<path>/status`` while it runs (one held
    by this very process counts too).
    """
    try:
        fd = os.open(Path(path) / "status", os.O_RDONLY)
    except OSError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing releases the probe's lock, if it got one
    return False


def through_api(
    settings: Settings, *, database: str | None = None, cause: ProjectionError | None = None
) -> ProxyClickHouse:
    """A proxy to the running API of ``settings``, whose process holds the chDB directory.

    Raises:
        ProjectionError: no operator token, the API does not answer, or ``database`` is
            not the API's; each message says how to proceed (``cause``: the failed open).
    """
    held = (
        f"the chDB directory {settings.clickhouse_url} is held by another process "
        "(chDB admits one process per directory)"
    )
    token_file = operator_token_path(settings)
    if not token_file.exists():
        raise ProjectionError(
            f"{held}, and no API serves it ({token_file} is missing): stop that process and retry"
        ) from cause
    if database not in (None, API_DATABASE):
        raise ProjectionError(f"{held}; rebuilding into {database!r}: {WRITES_REFUSED}") from cause
    url = api_url(settings)
    if not _healthy(url):
        raise ProjectionError(
            f"{held}, and the API at {url} does not answer: stop the process that holds it, "
            "or start the API (brigade up) and retry"
        ) from cause
    return ProxyClickHouse(url, token_file.read_text().strip(), database=API_DATABASE)


def _healthy(url: str) -> bool:
    try:
        return httpx.get(f"{url}/healthz", timeout=3.0).status_code == 200
    except httpx.HTTPError:
        return False
