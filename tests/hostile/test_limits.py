"""Server limits: oversized heads, slow heads, idle connections, metadata and payload hoarding.

Each limit answers with its own status and a JSON error body, and the stack keeps serving
every tenant afterwards.
"""

from __future__ import annotations

import contextlib
import json
import socket
from collections.abc import Iterator

import pytest

from brigade.httpserver import LimitedHttpToolsProtocol as Protocol
from tests.hostile.conftest import LIMIT_CONCURRENCY, QUOTA_BYTES, Stack

pytestmark = [pytest.mark.hostile, pytest.mark.slow]


def _raw(stack: Stack, data: bytes, *, timeout_s: float = 60) -> tuple[int, dict[str, object]]:
    """Send raw bytes on a fresh connection; the status and JSON body of the answer."""
    with socket.create_connection(("127.0.0.1", stack.ports["api"]), timeout=timeout_s) as sock:
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            sock.sendall(data)
        answer = _read_all(sock)
    head, _, body = answer.partition(b"\r\n\r\n")
    status = int(head.split(b" ", 2)[1])
    return status, json.loads(body) if body.startswith(b"{") else {}


def _read_all(sock: socket.socket) -> bytes:
    chunks = []
    while chunk := sock.recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def _get(path: bytes, headers: bytes = b"") -> bytes:
    return b"GET " + path + b" HTTP/1.1\r\nHost: api\r\n" + headers + b"\r\n"


def test_request_line_and_head_are_bounded(stack: Stack) -> None:
    status, body = _raw(stack, _get(b"/v1/jobs/" + b"a" * (Protocol.MAX_REQUEST_LINE + 10)))
    assert status == 414 and body["error"]["code"] == "request_too_large"  # type: ignore[index]
    huge = b"X-Big: " + b"b" * (Protocol.MAX_HEAD_BYTES + 10) + b"\r\n"
    assert _raw(stack, _get(b"/healthz", huge))[0] == 431
    many = b"".join(b"X-H%d: v\r\n" % i for i in range(Protocol.MAX_HEADERS + 1))
    assert _raw(stack, _get(b"/healthz", many))[0] == 431
    # An endless head sent in pieces is cut off too, not buffered
    with socket.create_connection(("127.0.0.1", stack.ports["api"]), timeout=60) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\nX-Endless: ")
        with contextlib.suppress(ConnectionResetError, BrokenPipeError):
            for _ in range(Protocol.MAX_HEAD_BYTES // 1024 + 2):
                sock.sendall(b"c" * 1024)
        assert _read_all(sock).startswith(b"HTTP/1.1 431")
    stack.normal_job_succeeds()


def test_slow_and_silent_connections_are_closed(stack: Stack) -> None:
    # A head that never completes, and a connection that never says anything: 408 after
    # HEAD_TIMEOUT_S (read with a generous socket timeout, no sleeps).
    patience = Protocol.HEAD_TIMEOUT_S * 6
    status, _ = _raw(stack, b"GET /healthz HTTP/1.1\r\nHost: a", timeout_s=patience)
    assert status == 408
    with socket.create_connection(("127.0.0.1", stack.ports["api"]), timeout=patience) as sock:
        assert _read_all(sock).startswith(b"HTTP/1.1 408")


@contextlib.contextmanager
def _idle_connections(stack: Stack, count: int) -> Iterator[list[socket.socket]]:
    sockets = [socket.create_connection(("127.0.0.1", stack.ports["api"]), timeout=60) for _ in range(count)]
    try:
        yield sockets
    finally:
        for sock in sockets:
            sock.close()


def test_connections_are_bounded_and_freed(stack: Stack) -> None:
    with _idle_connections(stack, LIMIT_CONCURRENCY):
        status, _ = _raw(stack, _get(b"/healthz"))
        assert status == 503
    stack.normal_job_succeeds()


@pytest.mark.parametrize(("metadata", "field"), [
    ({f"k{i}": "v" for i in range(33)}, "metadata"),
    ({"k" * 65: "v"}, "metadata"),
    ({"k": "v" * 1025}, "metadata.k"),
])
def test_metadata_is_bounded(stack: Stack, metadata: dict[str, str], field: str) -> None:
    with stack.client("mallory") as client:
        response = client.post("/v1/jobs", json={"input": "x", "metadata": metadata})
    assert response.status_code == 422, response.text
    fields = [f["field"] for f in response.json()["error"]["fields"]]
    assert fields and all(f.startswith(field) for f in fields), fields


def test_offloaded_payloads_have_a_per_tenant_quota(stack: Stack) -> None:
    stack.add_tenant("hoarder")
    threshold = stack.settings.inline_threshold_bytes
    sizes = []
    with stack.client("hoarder") as client:
        for index in range(QUOTA_BYTES // threshold + 2):
            text = f"{index}:" + "h" * (threshold + 1)
            response = client.post("/v1/jobs", json={"input": text})
            sizes.append(response.status_code)
            if response.status_code == 413:
                assert response.json()["error"]["code"] == "payload_quota_exceeded"
                break
        assert sizes[-1] == 413 and set(sizes[:-1]) == {202}, sizes
        upload = client.post("/v1/payloads", json={"input": "u" * (threshold + 1)})
        assert upload.status_code == 413
        # Small inline jobs are not offloaded and still pass
        assert client.post("/v1/jobs", json={"input": "small"}).status_code == 202
    with stack.client("acme") as other:
        assert other.post("/v1/jobs", json={"input": "a" * (threshold + 1)}).status_code == 202
    stack.normal_job_succeeds()
