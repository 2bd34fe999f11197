"""The HTTP protocol Brigade serves with: uvicorn's httptools parser, TCP_NODELAY always, and
upgrade offers it does not take served as plain HTTP/1.1. ``brigade api`` and ``brigade
model-server`` both run it.

asyncio sets TCP_NODELAY only on sockets whose ``proto`` is ``IPPROTO_TCP``; the listening
socket uvicorn binds for several workers has ``proto`` 0, so accepted connections kept
Nagle's algorithm and, with the client's delayed ACK, every keep-alive response waited
~40 ms for its last segment (measured: two workers answered 300 requests/s at 50 ms p50).
uvloop's transports did not show the delay; this makes it hold on every loop and socket path.

Clients such as Java's ``HttpClient`` (by default) and ``curl --http2`` offer cleartext HTTP/2
on their first request (``Connection: Upgrade, HTTP2-Settings``, ``Upgrade: h2c``). httptools
then skips the body and stops at the end of the head, and uvicorn, which only takes WebSocket
upgrades, started the request with an empty body: a valid ``POST /v1/jobs`` was answered
``400 malformed_json``. A server may ignore an upgrade offer (RFC 9110, section 7.8), so a
declined offer's head is parsed again without the ``upgrade`` connection option, and the
request, its body and any request after it are read as HTTP/1.1.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import Any

import httptools
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


class DecliningUpgradeProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol, serving requests that offer an upgrade it does not take.

    WebSocket upgrades (when a WebSocket library is installed) are still handed over as before.
    """

    _declined = False  # the current request offered an upgrade that is not taken

    def on_headers_complete(self) -> None:
        """Start the request, unless its upgrade offer is declined: it is started on the replay."""
        if self.parser.should_upgrade() and not self._should_upgrade():
            self._declined = True
            return
        super().on_headers_complete()

    def on_body(self, body: bytes) -> None:
        """Body bytes of the current request (none arrive for a declined offer's first parse)."""
        if not self._declined:
            super().on_body(body)

    def on_message_complete(self) -> None:
        """End of the current request (ignored on a declined offer's first parse)."""
        if not self._declined:
            super().on_message_complete()

    def data_received(self, data: bytes) -> None:
        """Feed the parser; on a declined upgrade offer, read the request again as HTTP/1.1."""
        self._unset_keepalive_if_required()
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError:
            message = "Invalid HTTP request received."
            self.logger.warning(message)
            self.send_400_response(message)
        except httptools.HttpParserUpgrade as upgrade:
            if self._declined:
                self._replay_without_upgrade(data[upgrade.args[0]:])
            elif self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()

    def _replay_without_upgrade(self, rest: bytes) -> None:
        # The head has been parsed once (its callbacks filled self.url and self.headers); a new
        # parser reads it again without the upgrade option, followed by the bytes after it.
        version = self.parser.get_http_version()
        method = self.parser.get_method()
        lines = [method, b" ", self.url, b" HTTP/", version.encode("ascii"), b"\r\n"]
        for name, value in self.headers:
            if name == b"connection":
                value = _without_upgrade(value)
                if not value:
                    continue
            lines += [name, b": ", value, b"\r\n"]
        lines.append(b"\r\n")
        self._declined = False
        self.parser = httptools.HttpRequestParser(self)
        self.data_received(b"".join(lines) + rest)


def _without_upgrade(connection: bytes) -> bytes:
    options = [option.strip() for option in connection.split(b",")]
    return b", ".join(option for option in options if option and option.lower() != b"upgrade")


class NoDelayHttpToolsProtocol(DecliningUpgradeProtocol):
    """The HTTP protocol with TCP_NODELAY and one send per response."""

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        set_nodelay(transport)
        coalescing: Any = CoalescingTransport(transport, asyncio.get_running_loop())
        super().connection_made(coalescing)
