"""ClickHouse backends, picked by the ``clickhouse_url`` setting.

``chdb:///abs/path`` or ``chdb://relative/path`` embeds ClickHouse (chDB) with its data
in that directory; ``http://host:8123`` or ``https://user:password@host:8443/db``
talks to a server through clickhouse-connect. Each backend module is imported only
when its scheme is used, so a server deployment never loads chDB.

Operator commands open their ClickHouse with :func:`open_clickhouse`, which falls back
to reading through the running API when that process holds the chDB directory.
"""

from __future__ import annotations

import contextlib
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from brigade.errors import ConfigError, ProjectionError
from projections.types import ClickHouse

if TYPE_CHECKING:
    from brigade.settings import Settings

__all__ = ["chdb_path", "connect", "open_clickhouse"]


def connect(url: str, *, database: str | None = None) -> ClickHouse:
    """Open the ClickHouse that ``url`` names and make ``database`` its default.

    The database is created if missing. It defaults to the URL's path for http(s)
    URLs and to ``"brigade"`` otherwise.

    Raises:
        ConfigError: the URL's scheme is not ``chdb``, ``http`` or ``https``, or it
            names no data path or host.
        ProjectionError: the engine cannot be opened or reached.
    """
    scheme = urlsplit(url).scheme
    if scheme == "chdb":
        from projections.backends.chdb import ChdbClickHouse

        return ChdbClickHouse(chdb_path(url), database=database or "brigade")
    if scheme in ("http", "https"):
        from projections.backends.clickhouse_connect import ClickHouseConnect

        return ClickHouseConnect.from_url(url, database=database)
    raise ConfigError(
        f"clickhouse_url {url!r} has an unknown scheme {scheme!r}; "
        "use chdb:///path/to/data for embedded chDB or http(s)://host:port for a server"
    )


def chdb_path(url: str) -> str:
    """The data directory of a ``chdb://`` URL: ``chdb:///abs`` or ``chdb://relative/dir``.

    Raises:
        ConfigError: the URL names no directory.
    """
    parts = urlsplit(url)
    path = parts.netloc + parts.path
    if not path:
        raise ConfigError(f"clickhouse_url {url!r} names no data directory; use chdb:///path/to/data")
    return path


def open_clickhouse(settings: Settings, *, database: str | None = None) -> ClickHouse:
    """The ClickHouse of ``settings`` for an operator command (query, replay, audit).

    Opens ``settings.clickhouse_url`` directly. When that is a chDB directory another
    process holds (the running API, in the embedded stack), reads go through that API's
    operator endpoint instead (:class:`projections.backends.proxy.ProxyClickHouse`):
    same typed results, but no inserts and only the API's database.

    Raises:
        ConfigError: as :func:`connect`.
        ProjectionError: the directory is held and no API serves it, or ``database`` is
            not the API's; the message says how to proceed.
    """
    url = settings.clickhouse_url
    if urlsplit(url).scheme != "chdb":
        return connect(url, database=database)
    from projections.backends import proxy

    if proxy.directory_locked(chdb_path(url)):
        # Ask the API first: a failed chDB open prints the engine's lock error to stderr.
        with contextlib.suppress(ProjectionError):
            return proxy.through_api(settings, database=database)
    try:
        return connect(url, database=database)
    except ProjectionError as exc:
        return proxy.through_api(settings, database=database, cause=exc)
