"""The ClickHouse adapter against real engines: chDB, and clickhouse-connect."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from brigade.errors import ConfigError, ProjectionError
from projections.backends import chdb_path, connect
from projections.types import ClickHouse

UTC = dt.UTC
NOW = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=UTC)
per_example = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
no_surrogates = st.text(st.characters(exclude_categories=["Cs"]))

TYPED_TABLE = """
CREATE TABLE typed (
    s String,
    u UInt64,
    i Int64,
    f Float64,
    at DateTime64(6, 'UTC'),
    note Nullable(String),
    vec Array(Float32),
    tenant LowCardinality(String),
    id UUID,
    price Decimal(18, 4),
    day Date,
    state Enum8('queued' = 1, 'running' = 2),
    attrs Map(String, UInt64)
) ENGINE = MergeTree ORDER BY u
"""
TYPED_ROWS = [
    ("a'b\\c", 2**64 - 1, -(2**63), 1.5, NOW, None, [0.5, -2.25], "acme", uuid.UUID(int=1),
     Decimal("1.2345"), dt.date(2024, 5, 6), "queued", {"k": 1}),
    ("", 0, 2**63 - 1, -0.0, NOW - dt.timedelta(days=400), "x\ty\n", [], "", uuid.UUID(int=2**128 - 1),
     Decimal("-3.5000"), dt.date(1970, 1, 1), "running", {}),
]  # fmt: skip
TYPED_COLUMNS = ("s", "u", "i", "f", "at", "note", "vec", "tenant", "id", "price", "day", "state", "attrs")


def _columns(rows: Sequence[tuple[object, ...]]) -> dict[str, list[object]]:
    return {name: [row[index] for row in rows] for index, name in enumerate(TYPED_COLUMNS)}


def test_insert_columns_round_trips_every_type(clickhouse: ClickHouse) -> None:
    clickhouse.execute(TYPED_TABLE)

    clickhouse.insert_columns("typed", _columns(TYPED_ROWS))

    assert clickhouse.query("SELECT * FROM typed ORDER BY u DESC") == TYPED_ROWS


def test_insert_rows_matches_insert_columns(clickhouse: ClickHouse) -> None:
    clickhouse.execute(TYPED_TABLE)

    clickhouse.insert_rows("typed", TYPED_ROWS, TYPED_COLUMNS)

    assert clickhouse.query("SELECT * FROM typed ORDER BY u DESC") == TYPED_ROWS


def test_query_dicts_names_columns(clickhouse: ClickHouse) -> None:
    rows = clickhouse.query_dicts("SELECT 1 AS one, 'two' AS two")

    assert rows == [{"one": 1, "two": "two"}]


def test_result_types_are_plain_python(clickhouse: ClickHouse) -> None:
    expressions = (
        "toDateTime('2024-01-02 03:04:05', 'UTC')",
        "toDateTime64('2024-01-02 03:04:05.5', 3, 'Asia/Tokyo')",
        "(1, 'a')",
        "CAST(NULL, 'Nullable(Int32)')",
        "[[1, 2], [3]]",
        "true",
        "toFloat32(0.1)",
        "toInt128(-5)",
    )
    [row] = clickhouse.query("SELECT " + ", ".join(expressions))

    assert row == (
        dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC),
        dt.datetime(2024, 1, 2, 3, 4, 5, 500000, tzinfo=dt.timezone(dt.timedelta(hours=9))),
        (1, "a"),
        None,
        [[1, 2], [3]],
        True,
        float.fromhex("0x1.99999ap-4"),  # 0.1 rounded to float32
        -5,
    )


def test_columns_left_out_take_defaults(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE d (k UInt8, v String DEFAULT 'dflt') ENGINE = MergeTree ORDER BY k")

    clickhouse.insert_columns("d", {"k": [1]})

    assert clickhouse.query("SELECT k, v FROM d") == [(1, "dflt")]


def test_inserts_into_a_qualified_table(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE q (k UInt8) ENGINE = MergeTree ORDER BY k")

    clickhouse.insert_columns(f"{clickhouse.database}.q", {"k": [1, 2]})

    assert clickhouse.query("SELECT count() FROM q") == [(2,)]


def test_large_insert_counts_every_row(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE big (n UInt64, tag String) ENGINE = MergeTree ORDER BY n")
    n = 50_000

    clickhouse.insert_columns("big", {"n": list(range(n)), "tag": [f"t{i % 7}" for i in range(n)]})

    assert clickhouse.query("SELECT count(), sum(n), uniqExact(tag) FROM big") == [(n, n * (n - 1) // 2, 7)]


def test_empty_insert_is_a_no_op(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE e (k UInt8) ENGINE = MergeTree ORDER BY k")

    clickhouse.insert_columns("e", {"k": []})
    clickhouse.insert_rows("e", [], ["k"])

    assert clickhouse.query("SELECT count() FROM e") == [(0,)]


def test_ragged_inserts_are_refused(clickhouse: ClickHouse) -> None:
    with pytest.raises(ProjectionError, match="differ in length"):
        clickhouse.insert_columns("t", {"a": [1, 2], "b": [1]})
    with pytest.raises(ProjectionError, match="row 1 has 1 values for 2 columns"):
        clickhouse.insert_rows("t", [(1, 2), (3,)], ["a", "b"])


def test_bad_table_names_are_refused(clickhouse: ClickHouse) -> None:
    with pytest.raises(ProjectionError, match="table name"):
        clickhouse.insert_columns("t; DROP TABLE x", {"a": [1]})


def test_params_bind_typed_values(clickhouse: ClickHouse) -> None:
    params = {"s": "it's", "n": 2**64 - 1, "at": NOW, "tags": ["a'b", None], "m": {"k": 1}, "none": None}

    rows = clickhouse.query(
        "SELECT {s:String}, {n:UInt64}, {at:DateTime64(6, 'UTC')}, {tags:Array(Nullable(String))},"
        " {m:Map(String, UInt8)}, {none:Nullable(String)}",
        params,
    )

    assert rows == [("it's", 2**64 - 1, NOW, ["a'b", None], {"k": 1}, None)]


def test_datetime_params_are_instants_whatever_the_zone(clickhouse: ClickHouse) -> None:
    berlin = dt.timezone(dt.timedelta(hours=2))
    rows = clickhouse.query(
        "SELECT {a:DateTime64(6, 'Asia/Tokyo')} = {b:DateTime64(6, 'UTC')}, {c:DateTime('UTC')}",
        {"a": NOW.astimezone(berlin), "b": NOW.replace(tzinfo=None), "c": dt.datetime(1970, 1, 1, 0, 0, 1)},
    )

    assert rows == [(True, dt.datetime(1970, 1, 1, 0, 0, 1, tzinfo=UTC))]


def test_injection_attempt_stays_a_literal(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE victims (s String) ENGINE = MergeTree ORDER BY s")
    attack = "x'); DROP TABLE victims; SELECT ('\\"
    clickhouse.insert_rows("victims", [(attack,)], ["s"])

    rows = clickhouse.query("SELECT count() FROM victims WHERE s = {s:String}", {"s": attack})

    assert rows == [(1,)]
    assert clickhouse.query("EXISTS TABLE victims") == [(1,)]


def test_params_the_sql_does_not_name_are_ignored(clickhouse: ClickHouse) -> None:
    # A '%' must not be taken for client-side "%(name)s" formatting.
    rows = clickhouse.query("SELECT 'a%b' LIKE 'a%'", {"unused": 1})

    assert rows == [(True,)]


def test_bad_param_names_are_refused(clickhouse: ClickHouse) -> None:
    with pytest.raises(ProjectionError, match="not an identifier"):
        clickhouse.query("SELECT 1", {"a b": 1})


@per_example
@given(value=no_surrogates)
def test_any_string_param_round_trips(clickhouse: ClickHouse, value: str) -> None:
    assert clickhouse.query("SELECT {v:String}", {"v": value}) == [(value,)]


@per_example
@given(value=st.lists(st.none() | no_surrogates, max_size=5))
def test_any_string_array_param_round_trips(clickhouse: ClickHouse, value: list[str | None]) -> None:
    assert clickhouse.query("SELECT {v:Array(Nullable(String))}", {"v": value}) == [(value,)]


@per_example
@given(
    value=st.datetimes(
        min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2262, 1, 1), timezones=st.just(UTC)
    )
)
def test_any_datetime_param_round_trips(clickhouse: ClickHouse, value: dt.datetime) -> None:
    assert clickhouse.query("SELECT {v:DateTime64(6, 'UTC')}", {"v": value}) == [(value,)]


@per_example
@given(
    number=st.integers(-(2**63), 2**63 - 1),
    real=st.floats(allow_nan=False),
)
def test_any_number_param_round_trips(clickhouse: ClickHouse, number: int, real: float) -> None:
    assert clickhouse.query("SELECT {n:Int64}, {r:Float64}", {"n": number, "r": real}) == [(number, real)]


def test_engine_errors_are_projection_errors(clickhouse: ClickHouse) -> None:
    with pytest.raises(ProjectionError, match="no_such_table") as caught:
        clickhouse.query("SELECT * FROM no_such_table")

    assert caught.value.__cause__ is not None


def test_each_connection_has_its_database(clickhouse: ClickHouse) -> None:
    assert clickhouse.query("SELECT currentDatabase()") == [(clickhouse.database,)]


def test_a_closed_connection_refuses_work(clickhouse: ClickHouse) -> None:
    clickhouse.close()
    clickhouse.close()

    with pytest.raises(ProjectionError, match="closed"):
        clickhouse.query("SELECT 1")


@pytest.mark.parametrize("url", ["postgres://db:5432/x", "clickhouse://h:9000", "/plain/path"])
def test_unknown_schemes_are_config_errors(url: str) -> None:
    with pytest.raises(ConfigError, match="clickhouse_url"):
        connect(url)


def test_chdb_urls_need_a_directory() -> None:
    with pytest.raises(ConfigError, match="clickhouse_url"):
        connect("chdb://")


@pytest.mark.parametrize(
    ("url", "path"),
    [("chdb:///var/lib/ch", "/var/lib/ch"), ("chdb://.brigade/clickhouse", ".brigade/clickhouse")],
)
def test_chdb_urls_name_absolute_or_relative_directories(url: str, path: str) -> None:
    assert chdb_path(url) == path


def test_one_process_hosts_one_chdb_directory(chdb_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ProjectionError, match="one chDB data directory"):
        connect(f"chdb://{tmp_path / 'other'}")


_WRITE_THEN_READ = textwrap.dedent(
    """
    import sys
    from projections.backends import connect

    ch = connect("chdb://" + sys.argv[1], database="kept")
    if sys.argv[2] == "write":
        ch.execute("CREATE TABLE t (k UInt32, v String) ENGINE = MergeTree ORDER BY k")
        ch.insert_columns("t", {"k": [1, 2, 3], "v": ["a", "b", "c"]})
    print(ch.query("SELECT count(), groupArray(v) FROM (SELECT v FROM t ORDER BY k)"))
    ch.close()
    """
)


def test_chdb_data_survives_a_restart(tmp_path: Path) -> None:
    # Given a process that wrote rows and exited (chDB allows one directory per process),
    def run(mode: str) -> str:
        done = subprocess.run(
            [sys.executable, "-W", "error", "-c", _WRITE_THEN_READ, str(tmp_path / "data"), mode],
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).parents[2],
            timeout=120,
        )
        return done.stdout.strip()

    assert run("write") == "[(3, ['a', 'b', 'c'])]"
    # when a new process opens the same directory, then it reads the same rows.
    assert run("read") == "[(3, ['a', 'b', 'c'])]"


def test_one_connection_serves_many_threads(clickhouse: ClickHouse) -> None:
    clickhouse.execute("CREATE TABLE shared (worker UInt8, n UInt32) ENGINE = MergeTree ORDER BY (worker, n)")

    def work(worker: int) -> None:
        for start in range(0, 1_000, 100):
            clickhouse.insert_columns(
                "shared", {"worker": [worker] * 100, "n": list(range(start, start + 100))}
            )
            clickhouse.query("SELECT count() FROM shared WHERE worker = {w:UInt8}", {"w": worker})

    with ThreadPoolExecutor(max_workers=4) as pool:
        list(pool.map(work, range(4)))

    assert clickhouse.query("SELECT worker, count() FROM shared GROUP BY worker ORDER BY worker") == [
        (worker, 1_000) for worker in range(4)
    ]


def test_an_unreachable_server_is_a_projection_error() -> None:
    with pytest.raises(ProjectionError, match=r"cannot reach ClickHouse at 127\.0\.0\.1"):
        connect("http://user:secret@127.0.0.1:1/db")


def test_server_urls_need_a_host() -> None:
    with pytest.raises(ConfigError, match="clickhouse_url"):
        connect("http:///db")
