"""Versioned migrations applied to real engines."""

from __future__ import annotations

import pytest

from brigade.errors import ProjectionError
from projections.migrations import MIGRATIONS, Migration, applied_migrations, apply_migrations
from projections.types import ClickHouse

FIRST = Migration(1, "create a", ("CREATE TABLE IF NOT EXISTS a (k UInt8) ENGINE = MergeTree ORDER BY k",))
SECOND = Migration(
    2,
    "create b, add a.v",
    (
        "CREATE TABLE IF NOT EXISTS b (k UInt8) ENGINE = MergeTree ORDER BY k",
        "ALTER TABLE a ADD COLUMN IF NOT EXISTS v String",
    ),
)


def _tables(ch: ClickHouse) -> list[str]:
    rows = ch.query("SELECT name FROM system.tables WHERE database = currentDatabase() ORDER BY name")
    return [name for (name,) in rows]


def test_pending_migrations_apply_in_order_and_are_recorded(clickhouse: ClickHouse) -> None:
    applied = apply_migrations(clickhouse, [FIRST, SECOND])

    assert applied == [1, 2]
    assert applied_migrations(clickhouse) == {1: "create a", 2: "create b, add a.v"}
    assert _tables(clickhouse) == ["a", "b", "schema_migrations"]
    assert clickhouse.query(
        "SELECT name FROM system.columns WHERE table = 'a' AND database = currentDatabase()"
    )[-1] == ("v",)


def test_a_second_run_applies_nothing(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, [FIRST, SECOND])

    assert apply_migrations(clickhouse, [FIRST, SECOND]) == []
    assert clickhouse.query("SELECT count() FROM schema_migrations") == [(2,)]


def test_only_new_versions_apply(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, [FIRST])

    assert apply_migrations(clickhouse, [FIRST, SECOND]) == [2]


def test_applied_at_is_recorded(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, [FIRST])

    [(applied_at,)] = clickhouse.query("SELECT applied_at FROM schema_migrations")

    assert applied_at.tzinfo is not None


def test_a_renamed_migration_is_refused(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, [FIRST])
    edited = Migration(1, "create a differently", FIRST.statements)

    with pytest.raises(ProjectionError, match="recorded as 'create a'"):
        apply_migrations(clickhouse, [edited, SECOND])
    assert "b" not in _tables(clickhouse)


def test_a_recorded_version_the_code_lacks_is_refused(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, [FIRST, SECOND])

    with pytest.raises(ProjectionError, match="does not define"):
        apply_migrations(clickhouse, [FIRST])


@pytest.mark.parametrize("versions", [(2, 1), (1, 1), (0,)])
def test_out_of_order_lists_are_refused(clickhouse: ClickHouse, versions: tuple[int, ...]) -> None:
    migrations = [Migration(version, f"m{version}", ()) for version in versions]

    with pytest.raises(ProjectionError, match="strictly increasing"):
        apply_migrations(clickhouse, migrations)


def test_a_failed_migration_is_not_recorded_and_reruns(clickhouse: ClickHouse) -> None:
    broken = Migration(
        2, "broken", ("CREATE TABLE IF NOT EXISTS c (k UInt8) ENGINE = MergeTree ORDER BY k", "NOT SQL")
    )

    with pytest.raises(ProjectionError, match=r"migration 2 \(broken\) failed at statement 2 of 2") as caught:
        apply_migrations(clickhouse, [FIRST, broken])

    assert isinstance(caught.value.__cause__, ProjectionError)
    assert applied_migrations(clickhouse) == {1: "create a"}
    fixed = Migration(2, "broken", broken.statements[:1])
    assert apply_migrations(clickhouse, [FIRST, fixed]) == [2]


def test_the_registry_is_ordered(clickhouse: ClickHouse) -> None:
    apply_migrations(clickhouse, MIGRATIONS)

    assert applied_migrations(clickhouse) == {m.version: m.name for m in MIGRATIONS}
