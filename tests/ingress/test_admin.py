"""The operator endpoint: SQL on the API's chDB connection, behind the operator token."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from brigade.endpoints import ADMIN_CLICKHOUSE_PATH
from brigade.endpoints import operator_token_path as token_path
from brigade.settings import Settings
from ingress.admin import ensure_operator_token
from projections.backends.decoding import decode_json_compact
from tests.ingress.conftest import Api
from tests.ingress.support import HAVE_CLICKHOUSE_READ_MODEL

pytestmark = pytest.mark.skipif(not HAVE_CLICKHOUSE_READ_MODEL, reason="needs the projections' chDB")


def _post(api: Api, body: dict[str, Any], token: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
    return httpx.post(f"{api.url}{ADMIN_CLICKHOUSE_PATH}", json=body, headers=headers, timeout=30)


def test_token_is_created_once_and_private(settings: Settings) -> None:
    first = ensure_operator_token(settings)
    assert len(first) >= 32
    assert stat.S_IMODE(token_path(settings).stat().st_mode) == 0o600
    assert ensure_operator_token(settings) == first
    assert not list(settings.data_dir.glob(".operator-token*"))  # no scratch files left


def test_query_answers_raw_json_compact_with_bound_parameters(api: Api) -> None:
    token = token_path(api.settings).read_text().strip()
    response = _post(
        api,
        {"sql": "SELECT {s:String} AS s, {n:UInt32} + 1 AS n", "params": {"s": "it's\\tok", "n": "41"}},
        token,
    )
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    names, rows = decode_json_compact(response.content)
    assert (names, rows) == (["s", "n"], [("it's\tok", 42)])


def test_null_format_runs_the_statement_and_answers_204(api: Api) -> None:
    token = token_path(api.settings).read_text().strip()
    assert _post(api, {"sql": "SELECT count() FROM jobs", "format": "Null"}, token).status_code == 204
    # The connection is read-only: DDL is refused by ClickHouse and leaves nothing behind
    create = {"sql": "CREATE TABLE IF NOT EXISTS admin_probe (x UInt8) ENGINE = Memory", "format": "Null"}
    refused = _post(api, create, token)
    assert refused.status_code == 400 and "readonly" in refused.json()["error"]["message"].lower()
    shown = _post(api, {"sql": "EXISTS TABLE admin_probe"}, token)
    assert decode_json_compact(shown.content)[1] == [(0,)]


@pytest.mark.parametrize("who", ["none", "wrong", "tenant"])
def test_anything_but_the_operator_token_is_401(api: Api, who: str) -> None:
    token = {"none": None, "wrong": "not-the-token", "tenant": api.keys["acme"]}[who]
    response = _post(api, {"sql": "SELECT 1"}, token)
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert response.json()["error"]["code"] == "unauthorized"


def test_clickhouse_errors_and_bad_bodies_are_client_errors(api: Api) -> None:
    token = token_path(api.settings).read_text().strip()
    failed = _post(api, {"sql": "SELECT * FROM no_such_table"}, token)
    assert failed.status_code == 400
    assert failed.json()["error"]["code"] == "clickhouse_error"
    assert "no_such_table" in failed.json()["error"]["message"]
    wrong_db = _post(api, {"sql": "SELECT 1", "database": "other"}, token)
    assert wrong_db.status_code == 400
    assert wrong_db.json()["error"]["code"] == "wrong_database"
    assert _post(api, {"sql": "SELECT 1", "format": "CSV"}, token).status_code == 422
    malformed = httpx.post(
        f"{api.url}{ADMIN_CLICKHOUSE_PATH}", content=b"{", headers={"Authorization": f"Bearer {token}"}
    )
    assert malformed.status_code == 400


def test_404_when_the_process_holds_no_chdb(start_api: Callable[..., Api]) -> None:
    api = start_api(open_read_side=False)
    response = _post(api, {"sql": "SELECT 1"}, "anything")
    assert response.status_code == 404
    assert json.loads(response.content)["error"]["code"] == "not_found"
    # The token exists all the same: the public /metrics answers only to it.
    assert token_path(api.settings).exists()


def test_openapi_marks_the_endpoint_operator_only(api: Api) -> None:
    document = httpx.get(f"{api.url}/openapi.json").json()
    operation = document["paths"][ADMIN_CLICKHOUSE_PATH]["post"]
    assert operation["security"] == [{"operator": []}]
    assert "operator" in document["components"]["securitySchemes"]
