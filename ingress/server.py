"""The HTTP protocol ``brigade api`` serves with: uvicorn's httptools parser, TCP_NODELAY always.

asyncio sets TCP_NODELAY only on sockets whose ``proto`` is ``IPPROTO_TCP``; the listening
socket uvicorn binds for several workers has ``proto`` 0, so accepted connections kept
Nagle's algorithm and, with the client's delayed ACK, every keep-alive response waited
~40 ms for its last segment (measured: two workers answered 300 requests/s at 50 ms p50).
uvloop's transports did not show the delay; this makes it hold on every loop and socket path.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "ingress.server:NoDelayHttpToolsProtocol"  # uvicorn's ``http=`` option


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle's algorithm on a TCP transport (no-op for other sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY on every connection."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        super().connection_made(transport)
