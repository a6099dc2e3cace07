"""Request bodies are bounded in bytes while they stream in, before anything holds them.

`BodyLimit` wraps the whole ASGI app (REST and Socket.IO's long-polling alike). A request
whose ``Content-Length`` is over its cap is answered 413 at once, before a byte of the
body is read. A body of unknown length (chunked) is counted as it arrives: the read that
passes the cap answers 413 and hands the app a disconnect, not the bytes, so no
handler ever buffers more than the cap. Either way the answer says ``Connection: close``:
the rest of the body is never read (see `server.protocol` for how the connection ends).
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server.errors import PayloadTooLarge, send_error

BodyCap = Callable[[Scope], int]
"""The most bytes a request's body may have, chosen by its scope (method and path)."""


class BodyLimit:
    def __init__(self, app: ASGIApp, cap: BodyCap) -> None:
        self.app = app
        self.cap = cap

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        cap = self.cap(scope)
        declared = _content_length(scope)
        if declared is not None and declared > cap:
            await send_error(send, _too_large(cap))
            return
        started = refused = False
        received = 0

        async def counted_receive() -> Message:
            nonlocal received, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > cap:
                    # Answer now; the app gets none of these bytes, then a disconnect on
                    # its next read (Starlette raises ClientDisconnect, Engine.IO stops
                    # reading), and whatever it sends after is dropped.
                    refused = True
                    if not started:
                        await send_error(send, _too_large(cap))
                    return {"type": "http.request", "body": b"", "more_body": True}
            return message

        async def watched_send(message: Message) -> None:
            nonlocal started
            if refused:
                return
            started = started or message["type"] == "http.response.start"
            await send(message)

        await self.app(scope, counted_receive, watched_send)


def _too_large(cap: int) -> PayloadTooLarge:
    return PayloadTooLarge(f"the request body is larger than {cap} bytes", limit=cap)


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None  # h11 refuses such a request before it reaches us
    return None
