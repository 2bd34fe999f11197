"""The HTTP protocol Brigade serves with: uvicorn's httptools parser, TCP_NODELAY always,
upgrade offers it does not take served as plain HTTP/1.1, and bounded request heads
(:class:`LimitedHttpToolsProtocol`). ``brigade api`` and ``brigade model-server`` both run it.

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
import json
import socket
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

HTTP_PROTOCOL = "brigade.httpserver:LimitedHttpToolsProtocol"  # uvicorn's ``http=`` option


def error_bytes(code: str, message: str) -> bytes:
    """A minimal Brigade error body, for answers given below the application (no ApiError)."""
    return json.dumps({"error": {"code": code, "message": message, "fields": []}}).encode()


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


_REASONS = {408: b"Request Timeout", 414: b"URI Too Long", 431: b"Request Header Fields Too Large"}


class LimitedHttpToolsProtocol(NoDelayHttpToolsProtocol):
    """The API's protocol: bounded request line, header block and header time, per connection.

    httptools buffers a request's head without limit, so a client could grow the API's
    memory with one endless header, or hold a connection with a head sent a byte at a time.
    Here the request line is at most ``MAX_REQUEST_LINE`` bytes (414), the head at most
    ``MAX_HEAD_BYTES`` (431) and ``MAX_HEADERS`` fields (431), and it must be complete
    within ``HEAD_TIMEOUT_S`` of the connection or of its first byte (408). Connections and
    concurrent requests are bounded by uvicorn's ``limit_concurrency`` (503), set from
    ``api.limit_concurrency``.
    """

    MAX_REQUEST_LINE = 8 * 1024
    MAX_HEAD_BYTES = 32 * 1024
    MAX_HEADERS = 100
    HEAD_TIMEOUT_S = 10.0

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        self._refusal: tuple[int, str] | None = None
        self._head_bytes = 0
        self._heads_done = 0
        self._in_head = True
        super().connection_made(transport)
        # A connection that sends nothing holds a slot of limit_concurrency: time it too.
        self._head_timer: asyncio.TimerHandle | None = asyncio.get_running_loop().call_later(
            self.HEAD_TIMEOUT_S, self._head_timeout
        )

    def data_received(self, data: bytes) -> None:
        """Feed the parser, counting the bytes of a head that is not complete yet."""
        if self._in_head and self._head_timer is None:
            self._head_timer = asyncio.get_running_loop().call_later(self.HEAD_TIMEOUT_S, self._head_timeout)
        heads_before, was_in_head = self._heads_done, self._in_head
        super().data_received(data)
        # Only a chunk that arrived, and left, with a head pending and none completed counts:
        # any other carries body bytes (a complete head's size is checked on completion).
        pending = was_in_head and self._in_head and self._heads_done == heads_before
        if pending and self._refusal is None:
            self._head_bytes += len(data)
            if self._head_bytes > self.MAX_HEAD_BYTES:
                self._refuse(431, f"the request head is larger than {self.MAX_HEAD_BYTES} bytes")

    def connection_lost(self, exc: Exception | None) -> None:
        """Stop the head timer with the connection."""
        self._cancel_timer()
        super().connection_lost(exc)

    def on_url(self, url: bytes) -> None:
        """Collect the target; refuse past ``MAX_REQUEST_LINE``."""
        super().on_url(url)
        if len(self.url) > self.MAX_REQUEST_LINE:
            self._stop(414, f"the request target is longer than {self.MAX_REQUEST_LINE} bytes")

    def on_header(self, name: bytes, value: bytes) -> None:
        """Collect a header; refuse past ``MAX_HEADERS`` fields."""
        super().on_header(name, value)
        if len(self.headers) > self.MAX_HEADERS:
            self._stop(431, f"more than {self.MAX_HEADERS} header fields")

    def on_headers_complete(self) -> None:
        """The head is complete: check its size (it may have come in one chunk), stop timing it."""
        size = len(self.url) + sum(len(name) + len(value) + 4 for name, value in self.headers)
        if size > self.MAX_HEAD_BYTES:
            self._stop(431, f"the request head is larger than {self.MAX_HEAD_BYTES} bytes")
        self._in_head = False
        self._head_bytes = 0
        self._heads_done += 1
        self._cancel_timer()
        super().on_headers_complete()

    def on_message_complete(self) -> None:
        """The next bytes on this connection start a new head."""
        super().on_message_complete()
        self._in_head = True

    def send_400_response(self, msg: str) -> None:
        """uvicorn's answer to a parser error; ours when a limit stopped the parser."""
        if self._refusal is None:
            super().send_400_response(msg)
            return
        status, message = self._refusal
        self._refusal = None
        self._refuse(status, message)

    def _stop(self, status: int, message: str) -> None:
        # Raised inside a parser callback: httptools stops and uvicorn calls send_400_response.
        self._refusal = (status, message)
        raise ValueError(message)

    def _head_timeout(self) -> None:
        self._head_timer = None
        if self._in_head and not self.transport.is_closing():
            self._refuse(408, f"the request head did not arrive within {self.HEAD_TIMEOUT_S:g}s")

    def _cancel_timer(self) -> None:
        if self._head_timer is not None:
            self._head_timer.cancel()
            self._head_timer = None

    def _refuse(self, status: int, message: str) -> None:
        self._cancel_timer()
        body = error_bytes("request_too_large" if status != 408 else "request_timeout", message)
        head = b"HTTP/1.1 %d %s\r\n" % (status, _REASONS[status])
        head += b"content-type: application/json\r\nconnection: close\r\n"
        head += b"content-length: %d\r\n\r\n" % len(body)
        self.transport.write(head + body)
        self.transport.close()
