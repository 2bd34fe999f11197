"""Versioned schema migrations for the projection database, applied idempotently.

Each applied migration is recorded in ``schema_migrations``. Applying the list again
applies only versions not yet recorded. A migration is recorded after its last
statement succeeds, so a crash part-way re-runs the whole migration next time: write
statements that can run twice (``CREATE TABLE IF NOT EXISTS``, ``ADD COLUMN IF NOT
EXISTS``); ClickHouse DDL has no transactions to lean on.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass

from brigade.errors import ProjectionError
from projections import tables
from projections.types import ClickHouse

__all__ = ["MIGRATIONS", "Migration", "applied_migrations", "apply_migrations"]

_TABLE = "schema_migrations"

# ReplacingMergeTree so that two processes racing to record the same version leave one
# row after merges; reads use FINAL to see that row before then.
_CREATE_TABLE = f"""
CREATE TABLE IF NOT EXISTS {_TABLE} (
    version UInt32,
    name String,
    applied_at DateTime64(3, 'UTC')
) ENGINE = ReplacingMergeTree(applied_at) ORDER BY version
"""


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema: ``statements`` run in order under ``version``.

    Versions are positive and increase along the list; a version's name and statements
    never change once released (add a new version instead).
    """

    version: int
    name: str
    statements: tuple[str, ...]


#: The projection schema, oldest first. The projections (jobs, job_events, rollups)
#: append their migrations here.
MIGRATIONS: tuple[Migration, ...] = (
    Migration(1, "job_events, jobs, circuit_events, per-minute rollups", tables.V1_STATEMENTS),
)


def apply_migrations(ch: ClickHouse, migrations: Sequence[Migration] = MIGRATIONS) -> list[int]:
    """Apply the versions of ``migrations`` not yet recorded in ``ch``, in order.

    Returns the versions applied now (empty when the schema is current).

    Raises:
        ProjectionError: the list is out of order, the database records a version under
            another name or a version the list lacks (history was edited), or a
            statement fails (nothing after it runs, and its version is not recorded).
    """
    _check_order(migrations)
    ch.execute(_CREATE_TABLE)
    recorded = applied_migrations(ch)
    _check_history(recorded, migrations)
    applied: list[int] = []
    for migration in migrations:
        if migration.version not in recorded:
            _apply(ch, migration)
            applied.append(migration.version)
    return applied


def applied_migrations(ch: ClickHouse) -> dict[int, str]:
    """``{version: name}`` of the migrations recorded in ``ch``."""
    rows = ch.query(f"SELECT version, name FROM {_TABLE} FINAL ORDER BY version")
    return {int(version): str(name) for version, name in rows}


def _check_order(migrations: Sequence[Migration]) -> None:
    previous = 0
    for migration in migrations:
        if migration.version <= previous:
            raise ProjectionError(
                f"migration {migration.version} ({migration.name}) must come after version {previous}: "
                "versions are positive and strictly increasing"
            )
        previous = migration.version


def _check_history(recorded: dict[int, str], migrations: Sequence[Migration]) -> None:
    known = {migration.version: migration.name for migration in migrations}
    for version, name in recorded.items():
        if version not in known:
            raise ProjectionError(
                f"the database records migration {version} ({name}) that this code does not define; "
                "it is newer than the code or history was edited"
            )
        if known[version] != name:
            raise ProjectionError(
                f"migration {version} is recorded as {name!r} but the code calls it {known[version]!r}; "
                "released migrations must not be edited, add a new version instead"
            )


def _apply(ch: ClickHouse, migration: Migration) -> None:
    for index, statement in enumerate(migration.statements):
        try:
            ch.execute(statement)
        except ProjectionError as exc:
            raise ProjectionError(
                f"migration {migration.version} ({migration.name}) failed at statement {index + 1} "
                f"of {len(migration.statements)}: {exc}"
            ) from exc
    ch.insert_rows(
        _TABLE,
        [(migration.version, migration.name, dt.datetime.now(dt.UTC))],
        ("version", "name", "applied_at"),
    )
