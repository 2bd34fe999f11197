"""A model endpoint that holds calls containing a marker until the test releases them."""

from __future__ import annotations

import asyncio
import threading

from starlette.types import ASGIApp, Message, Receive, Scope, Send


class HoldingModel:
    """ASGI wrapper: a request whose body contains ``marker`` waits until ``release()``."""

    def __init__(self, app: ASGIApp, *, marker: bytes) -> None:
        self._app = app
        self._marker = marker
        self._released = threading.Event()
        self.held = 0  # requests waiting right now

    def release(self) -> None:
        """Let every held request (and later ones) through."""
        self._released.set()

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        body = b"".join(m.get("body", b"") for m in messages)
        if self._marker in body:
            self.held += 1
            try:
                await asyncio.to_thread(self._released.wait)
            finally:
                self.held -= 1

        async def replay() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self._app(scope, replay, send)


class RejectingModel:
    """ASGI wrapper: a call whose body contains ``marker`` is answered 400, as a model server
    rejects an input it cannot take (too long for the context, say), failing the whole call."""

    def __init__(self, app: ASGIApp, *, marker: bytes) -> None:
        self._app = app
        self._marker = marker
        self.rejected = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        messages: list[Message] = []
        while True:
            message = await receive()
            messages.append(message)
            if message["type"] != "http.request" or not message.get("more_body", False):
                break
        if self._marker in b"".join(m.get("body", b"") for m in messages):
            self.rejected += 1
            body = b'{"error": {"message": "input rejected", "type": "invalid_request_error"}}'
            await send({"type": "http.response.start", "status": 400,
                        "headers": [(b"content-type", b"application/json")]})
            await send({"type": "http.response.body", "body": body})
            return

        async def replay() -> Message:
            return messages.pop(0) if messages else {"type": "http.disconnect"}

        await self._app(scope, replay, send)
