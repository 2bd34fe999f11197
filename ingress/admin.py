"""The operator endpoint: SQL on the API's own chDB connection, for CLI commands.

In the embedded default the API process holds the chDB data directory, and chDB admits
one process per directory, so ``brigade query``, ``brigade replay`` and ``brigade audit``
cannot open it while the stack runs. They send their SQL here instead
(:class:`projections.backends.proxy.ProxyClickHouse`) and decode the raw ``JSONCompact``
bytes themselves, so results are typed exactly as with a direct connection.

The endpoint takes an operator token, never a tenant key: a random token kept in
``<data dir>/operator-token`` (mode 0600), which only whoever may read the data directory
(and so could open chDB anyway) can present. Even so it is read-only on the server side:
statements run on a connection of their own with ClickHouse's ``readonly=1`` (no writes,
DDL, setting changes or table functions), and calls to functions that reach outside the
database (``file()``, ``url()``, ``remote()``...) are refused before they run
(:mod:`ingress.sqlguard`), so a leaked token reads the projections and nothing else.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from brigade.endpoints import ADMIN_CLICKHOUSE_PATH, OPERATOR_TOKEN_FILE, operator_token_path
from brigade.errors import ProjectionError
from brigade.settings import Settings
from ingress.errors import ApiError
from ingress.http import JSON_TYPE, parse_body
from ingress.sqlguard import refused_call


class RawClickHouse(Protocol):
    """The part of the chDB adapter the endpoint needs (``ChdbClickHouse``)."""

    @property
    def database(self) -> str: ...

    def query_bytes(self, sql: str, fmt: str, params: dict[str, str] | None = None) -> bytes: ...


class ClickHouseRequest(BaseModel):
    """``POST /v1/admin/clickhouse``: one statement, its parameters as ClickHouse text."""

    model_config = ConfigDict(extra="forbid")

    sql: str = Field(min_length=1, description="One statement, without a FORMAT clause.")
    params: dict[str, str] = Field(
        default_factory=dict, description="{name: text} for {name:Type} placeholders."
    )
    format: Literal["JSONCompact", "Null"] = Field(
        default="JSONCompact", description="JSONCompact answers the rows; Null discards them (204)."
    )
    database: str | None = Field(
        default=None, description="Refuse (400) unless the API's connection uses this database."
    )


class Operator:
    """What the endpoint serves from: the API's chDB connection and the token, once opened."""

    def __init__(self) -> None:
        self.clickhouse: RawClickHouse | None = None
        self.token: str | None = None

    def attach(self, clickhouse: RawClickHouse, token: str) -> None:
        """Serve ``clickhouse`` to holders of ``token``."""
        self.clickhouse, self.token = clickhouse, token

    def detach(self) -> None:
        """Stop serving (the connection is closing)."""
        self.clickhouse = self.token = None


def ensure_operator_token(settings: Settings) -> str:
    """The operator token, created once (random, mode 0600) if missing.

    Written to a private temporary file and hard-linked into place, so a concurrent
    reader sees either no file or the whole token, and two creators agree on one.
    """
    path = operator_token_path(settings)
    if path.exists():
        return _read_token(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{OPERATOR_TOKEN_FILE}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(secrets.token_urlsafe(32) + "\n")
        os.link(scratch, path)
    except FileExistsError:
        pass  # another process won the race; its token stands
    finally:
        scratch.unlink(missing_ok=True)
    return _read_token(path)


def _read_token(path: Path) -> str:
    token = path.read_text().strip()
    if not token:
        raise ProjectionError(f"the operator token file {path} is empty; delete it and restart the API")
    return token


def operator_of(request: Request) -> Operator:
    """The app's ``Operator`` (set by ``create_app``)."""
    operator: Operator = request.app.state.operator
    return operator


def require_operator(request: Request, expected: str) -> None:
    """401 unless the request carries the operator token (``Authorization: Bearer``)."""
    _check_token(request, expected)


def _check_token(request: Request, expected: str) -> None:
    scheme, _, presented = request.headers.get("authorization", "").partition(" ")
    ok = scheme.lower() == "bearer" and hmac.compare_digest(presented.strip().encode(), expected.encode())
    if not ok:
        raise ApiError(
            401,
            "unauthorized",
            "the operator token is required (Authorization: Bearer <data dir>/operator-token)",
            headers={"WWW-Authenticate": "Bearer"},
        )


async def admin_clickhouse(request: Request) -> Response:
    """``POST /v1/admin/clickhouse``: run SQL on the API's chDB connection (operator only)."""
    operator = operator_of(request)
    clickhouse, token = operator.clickhouse, operator.token
    if clickhouse is None or token is None:
        raise ApiError(404, "not_found", "this API process holds no chDB connection to serve")
    _check_token(request, token)
    body = parse_body(await request.body(), ClickHouseRequest)
    if body.database is not None and body.database != clickhouse.database:
        raise ApiError(
            400,
            "wrong_database",
            f"the API's connection uses database {clickhouse.database!r}, not {body.database!r}",
        )
    refused = refused_call(body.sql)
    if refused is not None:
        reason = (
            "the statement has an unclosed quote or comment" if refused == "unparsable"
            else f"{refused}() reaches outside the database; the operator endpoint is read-only"
        )
        raise ApiError(400, "sql_refused", reason)
    try:
        raw = await run_in_threadpool(clickhouse.query_bytes, body.sql, body.format, body.params)
    except ProjectionError as exc:
        raise ApiError(400, "clickhouse_error", str(exc)) from exc
    if body.format == "Null":
        return Response(status_code=204)
    return Response(raw, media_type=JSON_TYPE)


def openapi_paths() -> dict[str, Any]:
    """The endpoint's OpenAPI path item (operator-only, its own security scheme)."""
    error = {"$ref": "#/components/schemas/ErrorBody"}

    def _error(description: str) -> dict[str, Any]:
        return {"description": description, "content": {"application/json": {"schema": error}}}

    return {
        ADMIN_CLICKHOUSE_PATH: {
            "post": {
                "operationId": "adminClickhouse",
                "summary": "Operator only: run SQL on the API's embedded chDB",
                "description": "For brigade query/replay/audit while the embedded stack runs. Needs the "
                "operator token from <data dir>/operator-token, not a tenant key. 404 when this "
                "process holds no chDB connection.",
                "tags": ["operator"],
                "security": [{"operator": []}],
                "requestBody": {
                    "required": True,
                    "content": {
                        "application/json": {"schema": {"$ref": "#/components/schemas/ClickHouseRequest"}}
                    },
                },
                "responses": {
                    "200": {
                        "description": "The JSONCompact result",
                        "content": {"application/json": {"schema": {"type": "object"}}},
                    },
                    "204": {"description": "Ran; format Null"},
                    "400": _error("Malformed JSON, wrong database, or ClickHouse refused the SQL"),
                    "401": _error("Missing or wrong operator token"),
                    "404": _error("No chDB connection in this process"),
                    "413": _error("Body too large"),
                    "422": _error("Schema violation; the body names the fields"),
                },
            }
        }
    }
