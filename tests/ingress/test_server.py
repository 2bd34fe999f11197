"""The HTTP protocol ``brigade api`` serves with: TCP_NODELAY on every connection, whole responses."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from brigade.httpserver import HTTP_PROTOCOL
from tests.ingress.support import wait_until


async def _echo(request: Request) -> Response:
    return Response(b'{"n":' + request.path_params["n"].encode() + b"}", media_type="application/json")


@contextmanager
def _serve_like_workers() -> Iterator[tuple[uvicorn.Server, int]]:
    """Serve on a socket bound the way uvicorn binds it for several workers (proto 0)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    app = Starlette(routes=[Route("/echo/{n}", _echo)])
    # The asyncio loop: uvloop happens to set TCP_NODELAY itself, asyncio does not on this socket.
    config = uvicorn.Config(app, log_level="warning", lifespan="off", loop="asyncio", http=HTTP_PROTOCOL)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout_s=30)
        assert server.started, "uvicorn did not start"
        yield server, port
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        sock.close()


def _read_response(client: socket.socket) -> bytes:
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = client.recv(65536)
        assert chunk, "connection closed before the head"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = int(next(h for h in head.split(b"\r\n") if h.lower().startswith(b"content-length:"))[15:])
    while len(body) < length:
        chunk = client.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    assert head.startswith(b"HTTP/1.1 200"), head
    return body


def test_keep_alive_connections_have_nodelay_and_answer_promptly() -> None:
    # Given a server on a proto-0 socket (where asyncio leaves Nagle on)
    with _serve_like_workers() as (server, port), socket.create_connection(("127.0.0.1", port)) as client:
        # When a client sends sequential keep-alive requests
        started = time.perf_counter()
        for n in range(40):
            client.sendall(f"GET /echo/{n} HTTP/1.1\r\nHost: t\r\n\r\n".encode())
            assert _read_response(client) == f'{{"n":{n}}}'.encode()
        elapsed = time.perf_counter() - started
        # Then the server side of the connection has TCP_NODELAY set
        (protocol,) = server.server_state.connections
        sock = protocol.transport.get_extra_info("socket")
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) != 0
        # and no answer waited for a delayed ACK (~40 ms each with Nagle): 40 answers well under 1.6 s
        assert elapsed < 1.0, f"40 keep-alive requests took {elapsed:.2f}s"


def test_connection_close_still_gets_the_whole_response() -> None:
    with _serve_like_workers() as (_, port), socket.create_connection(("127.0.0.1", port)) as client:
        client.sendall(b"GET /echo/7 HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        assert _read_response(client) == b'{"n":7}'
        client.settimeout(5)
        assert client.recv(1) == b"", "the server closes after answering"
