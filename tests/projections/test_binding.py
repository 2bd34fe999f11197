"""Parameter text, identifiers and result decoding, without an engine."""

from __future__ import annotations

import datetime as dt
import uuid
from decimal import Decimal

import pytest
from clickhouse_connect.driver.binding import bind_query
from hypothesis import given
from hypothesis import strategies as st

from brigade.errors import ProjectionError
from projections.backends.binding import format_param, format_params, quote_identifier, quote_table
from projections.backends.clickhouse_connect import _bind
from projections.backends.decoding import converter, parse_type

UTC = dt.UTC


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (None, "\\N"),
        ("plain", "plain"),
        ("tab\there\nnl\\bs'q", "tab\\there\\nnl\\\\bs'q"),
        (True, "true"),
        (-7, "-7"),
        (2.5, "2.5"),
        (float("-inf"), "-inf"),
        (Decimal("1E+2"), "100"),
        (dt.date(2024, 1, 2), "2024-01-02"),
        (uuid.UUID(int=1), "00000000-0000-0000-0000-000000000001"),
        (b"\x00\xff", "\\x00\\xff"),
        (["a'b", None, 1], "['a\\'b', NULL, 1]"),
        ((1, "x"), "(1, 'x')"),
        ({"k": [dt.date(2024, 1, 2)]}, "{'k': ['2024-01-02']}"),
    ],
)
def test_values_format_as_clickhouse_parameter_text(value: object, text: str) -> None:
    assert format_param(value) == text


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC), "1704164645"),
        (dt.datetime(2024, 1, 2, 3, 4, 5, 120000, tzinfo=UTC), "1704164645.120000"),
        (dt.datetime(2024, 1, 2, 4, 4, 5, tzinfo=dt.timezone(dt.timedelta(hours=1))), "1704164645"),
        (dt.datetime(2024, 1, 2, 3, 4, 5), "1704164645"),  # naive is UTC
        (dt.datetime(1970, 1, 1, 0, 0, 5, tzinfo=UTC), "00005"),  # five digits or it is no timestamp
        (dt.datetime(1969, 12, 31, 23, 59, 58, 500000, tzinfo=UTC), "-00001.500000"),
    ],
)
def test_datetimes_format_as_exact_epoch_seconds(value: dt.datetime, text: str) -> None:
    assert format_param(value) == text


def test_unknown_values_are_refused() -> None:
    with pytest.raises(ProjectionError, match="cannot bind a object"):
        format_param(object())


def test_parameter_names_must_be_identifiers() -> None:
    with pytest.raises(ProjectionError, match="not an identifier"):
        format_params({"x}": 1})


@given(value=st.text() | st.lists(st.none() | st.text()) | st.datetimes() | st.integers())
def test_clickhouse_connect_sends_our_text_unchanged(value: object) -> None:
    _, sent = bind_query("SELECT {v:String}", _bind("SELECT {v:String}", {"v": value}))

    assert sent == {"param_v": format_param(value)}


def test_identifiers_are_backquoted_and_escaped() -> None:
    assert quote_identifier("a`b\\c") == "`a\\`b\\\\c`"
    assert quote_table("db.t") == "`db`.`t`"


@pytest.mark.parametrize("name", ["", "a.b.c", "t;x", "1t", "`t`"])
def test_table_names_are_plain_identifiers(name: str) -> None:
    with pytest.raises(ProjectionError):
        quote_table(name)


def test_types_split_at_top_level_commas_only() -> None:
    assert parse_type("Map(String, Tuple(a DateTime64(6, 'UTC'), b Enum8('x,y' = 1)))") == (
        "Map",
        ["String", "Tuple(a DateTime64(6, 'UTC'), b Enum8('x,y' = 1))"],
    )
    assert parse_type("UInt64") == ("UInt64", [])


def test_converters_follow_the_declared_type() -> None:
    assert converter("Map(UInt8, Nullable(UUID))")({"1": None, "2": str(uuid.UUID(int=2))}) == {
        1: None,
        2: uuid.UUID(int=2),
    }
    assert converter("Tuple(at DateTime64(9, 'UTC'), n Float64)")(["1970-01-01 00:00:01.123456789", "nan"])[
        0
    ] == dt.datetime(1970, 1, 1, 0, 0, 1, 123456, tzinfo=UTC)
    assert converter("LowCardinality(FixedString(3))")("ab\0") == "ab"
    assert converter("Decimal(18, 4)")("1.25") == Decimal("1.25")
