"""What the operator SQL endpoint refuses before ClickHouse sees the statement.

The endpoint's connection is read-only (ClickHouse ``readonly=1``: no writes, no DDL, no
setting changes, no table functions that create temporary storage). Read-only still lets a
``SELECT`` call functions that reach outside the database (the scalar ``file()`` reads a
local file), so calls to functions that touch files, URLs, other servers or programs are
refused by name here, whatever the case, quoting or comments around them.
"""

from __future__ import annotations

import itertools
import re

# Table and scalar functions that read or write outside the database, or run programs.
REFUSED_FUNCTIONS = frozenset(name.lower() for name in (
    "file", "fileCluster", "url", "urlCluster", "remote", "remoteSecure", "cluster",
    "clusterAllReplicas", "s3", "s3Cluster", "gcs", "oss", "cosn", "azureBlobStorage",
    "azureBlobStorageCluster", "hdfs", "hdfsCluster", "hive", "mysql", "postgresql", "sqlite",
    "mongodb", "redis", "odbc", "jdbc", "executable", "executablePool", "input", "python",
    "iceberg", "icebergS3", "icebergAzure", "icebergHDFS", "icebergLocal", "deltaLake", "hudi",
    "dictionary", "loop", "fuzzJSON", "fuzzQuery", "arrowFlight", "ytsaurus", "paimon",
))

_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line>(--|\#)[^\n]*)
    | (?P<block>/\*.*?\*/)
    | (?P<string>'(?:[^'\\]|\\.|'')*')
    | (?P<quoted>`(?:[^`\\]|\\.|``)*`|"(?:[^"\\]|\\.|"")*")
    | (?P<word>[A-Za-z_][A-Za-z0-9_$]*)
    | (?P<other>.)
    """,
    re.VERBOSE | re.DOTALL,
)


def refused_call(sql: str) -> str | None:
    """The first refused function ``sql`` calls, ``"unparsable"`` for an unclosed quote or comment."""
    names: list[str | None] = []  # identifiers and other significant tokens, in order
    position = 0
    while position < len(sql):
        match = _TOKEN.match(sql, position)
        # "other" at a quote or "/*" means the string or comment never closes.
        if match is None or (match.lastgroup == "other" and _opens_unclosed(sql, position)):
            return "unparsable"
        position = match.end()
        kind = match.lastgroup
        if kind in ("space", "line", "block"):
            continue
        text = match.group()
        if kind == "quoted":
            names.append(text[1:-1].lower())
        elif kind == "word":
            names.append(text.lower())
        else:
            names.append(None if text != "(" else "(")
    for name, following in itertools.pairwise(names):
        if following == "(" and name in REFUSED_FUNCTIONS:
            return name
    return None


def _opens_unclosed(sql: str, position: int) -> bool:
    return sql[position] in "'`\"" or sql.startswith("/*", position)
