"""Where the API is reached and how an operator proves who they are: one home for each name.

The API serves the admin endpoint and creates the operator token; the projections' proxy
and the application shell connect to both. They all take the path, the token file and the
URL from here, so a rename cannot leave one of them behind.
"""

from __future__ import annotations

from pathlib import Path

from brigade.settings import Settings

ADMIN_CLICKHOUSE_PATH = "/v1/admin/clickhouse"
OPERATOR_TOKEN_FILE = "operator-token"


def operator_token_path(settings: Settings) -> Path:
    """Where the operator token lives (``<data dir>/operator-token``, mode 0600)."""
    return settings.path(OPERATOR_TOKEN_FILE)


def api_url(settings: Settings) -> str:
    """The URL this machine reaches the API of ``settings`` at."""
    # A wildcard bind address is not one to connect to; the API is local to the directory.
    host = settings.api.host
    if host in ("", "0.0.0.0", "::"):
        host = "127.0.0.1"
    return f"http://[{host}]:{settings.api.port}" if ":" in host else f"http://{host}:{settings.api.port}"
