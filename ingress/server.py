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
from typing import Any

from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "ingress.server:NoDelayHttpToolsProtocol"  # uvicorn's ``http=`` option


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    """Disable Nagle's algorithm on a TCP transport (no-op for other sockets)."""
    sock = transport.get_extra_info("socket")
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        with contextlib.suppress(OSError):  # the peer may already be gone
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class CoalescingTransport:
    """Writes made in one event-loop step leave in one ``send``.

    uvicorn writes a response's head and body separately: two syscalls and two segments per
    small JSON answer, and the client wakes twice. Buffering until the end of the step
    (``call_soon``) joins them without delaying anything measurable. Everything except
    ``write`` and ``close`` goes to the real transport.
    """

    def __init__(self, transport: asyncio.Transport, loop: asyncio.AbstractEventLoop) -> None:
        self._transport = transport
        self._loop = loop
        self._pending: list[bytes] = []

    def write(self, data: bytes) -> None:
        """Queue ``data``; it is sent with everything else written in this step."""
        if not self._pending:
            self._loop.call_soon(self.flush)
        self._pending.append(data)

    def flush(self) -> None:
        """Send what is queued (dropped when the connection is already closing)."""
        if not self._pending:
            return
        data = self._pending[0] if len(self._pending) == 1 else b"".join(self._pending)
        self._pending = []
        if not self._transport.is_closing():
            self._transport.write(data)

    def close(self) -> None:
        """Send what is queued, then close."""
        self.flush()
        self._transport.close()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._transport, name)


class NoDelayHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with TCP_NODELAY and one send per response."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        coalescing: Any = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)
