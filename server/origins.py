"""Cross-site protection: browsers may only change things from the server's own origin
(or an origin listed in ``cors_origins``).

A web page the user happens to visit can send requests to ``localhost:3000`` — a form
post needs no CORS preflight, and WebSocket handshakes have no CORS at all — so without
this check any site could create a conversation and run commands through the agent.
Browsers always send ``Origin`` on such requests; tools like curl send none, and are not
affected.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from urllib.parse import urlsplit

import orjson
from starlette.types import ASGIApp, Receive, Scope, Send

SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def origin_allowed(origin: str | None, host: str | None, allowed: Iterable[str]) -> bool:
    """No ``Origin`` (not a browser), the server's own origin, or a listed one."""
    if not origin:
        return True
    if origin in allowed or "*" in allowed:
        return True
    return host is not None and urlsplit(origin).netloc.lower() == host.lower()


def headers_of(scope: Scope) -> Mapping[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


class OriginGuard:
    """Refuses state-changing HTTP requests and WebSocket handshakes from foreign origins
    with 403 ``{"error": "forbidden_origin"}``."""

    def __init__(self, app: ASGIApp, allowed: Iterable[str]) -> None:
        self.app = app
        self.allowed = frozenset(allowed)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        guarded = scope["type"] == "websocket" or (
            scope["type"] == "http" and scope["method"] not in SAFE_METHODS
        )
        if guarded:
            headers = headers_of(scope)
            origin = headers.get("origin")
            if not origin_allowed(origin, headers.get("host"), self.allowed):
                await _refuse(scope, send, origin or "")
                return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, origin: str) -> None:
    body = orjson.dumps(
        {
            "error": "forbidden_origin",
            "message": f"requests from {origin} are not allowed; list the origin in "
            "THREADLINE_CORS_ORIGINS to allow it",
        }
    )
    if scope["type"] == "websocket":
        # Refusing the handshake: the client sees HTTP 403.
        await send({"type": "websocket.close", "code": 1008, "reason": "forbidden origin"})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
