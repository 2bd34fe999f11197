"""ClickHouse for the projection tests: one engine per session, one database per test.

Every test that takes ``clickhouse`` runs twice, once per backend:

- ``chdb``: the embedded backend, on a chDB data directory shared by the session;
- ``clickhouse-connect``: the server backend, on the server that
  ``BRIGADE_TEST_CLICKHOUSE_URL`` names, or else on the same chDB directory through
  clickhouse-connect's in-process chDB interface, so its binding and insert code is
  exercised even without a server.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import clickhouse_connect
import pytest

from projections.backends import connect
from projections.backends.chdb import ChdbClickHouse
from projections.backends.clickhouse_connect import ClickHouseConnect
from projections.types import ClickHouse


@pytest.fixture(scope="session")
def chdb_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """The session's chDB data directory, its engine kept running throughout."""
    path = tmp_path_factory.mktemp("clickhouse")
    # chDB stops its engine when the last connection closes; one idle connection held
    # for the session spares every test a restart.
    anchor = ChdbClickHouse(path, database="default")
    yield path
    anchor.close()


@pytest.fixture(params=["chdb", "clickhouse-connect"])
def clickhouse(request: pytest.FixtureRequest, chdb_dir: Path) -> Iterator[ClickHouse]:
    """A connection to a fresh database of its own, dropped afterwards."""
    database = f"test_{uuid.uuid4().hex[:12]}"
    ch = _open(request.param, chdb_dir, database)
    try:
        yield ch
    finally:
        ch.close()
        cleanup = _open(request.param, chdb_dir, "default")
        cleanup.execute(f"DROP DATABASE IF EXISTS {database}")
        cleanup.close()


def _open(backend: str, chdb_dir: Path, database: str) -> ClickHouse:
    if backend == "chdb":
        return connect(f"chdb://{chdb_dir}", database=database)
    server = os.environ.get("BRIGADE_TEST_CLICKHOUSE_URL")
    if server:
        return connect(server, database=database)
    client = clickhouse_connect.get_client(dsn=f"chdb://{chdb_dir}", tz_mode="aware")
    return ClickHouseConnect(client, database=database)
