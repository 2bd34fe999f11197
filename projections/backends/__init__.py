"""ClickHouse backends, picked by the ``clickhouse_url`` setting.

``chdb:///abs/path`` or ``chdb://relative/path`` embeds ClickHouse (chDB) with its data
in that directory; ``http://host:8123`` or ``https://user:password@host:8443/db``
talks to a server through clickhouse-connect. Each backend module is imported only
when its scheme is used, so a server deployment never loads chDB.
"""

from __future__ import annotations

from urllib.parse import urlsplit

from brigade.errors import ConfigError
from projections.types import ClickHouse

__all__ = ["chdb_path", "connect"]


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
