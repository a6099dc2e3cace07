"""Cross-site protection, for a server that any web page can reach on ``localhost``.

Host: a page on ``evil.example`` can rebind its name to 127.0.0.1 (DNS rebinding); its
requests then carry ``Host: evil.example`` and an Origin that agrees with it, so an Origin
check alone passes them. Only names the server answers to are accepted: IP literals
(a rebinding needs a name), ``localhost`` and its subdomains, and the names the operator
lists in ``allowed_hosts`` (``*.example.com`` wildcards, ``*`` for any). Every request is
checked, reads included: a rebound page could otherwise read the conversations.

Origin: browsers may only change things from the server's own origin (or an origin listed
in ``cors_origins``). A web page the user happens to visit can send requests to
``localhost:3000`` — a form post needs no CORS preflight, and WebSocket handshakes have no
CORS at all — so without this check any site could create a conversation and run
commands through the agent. Browsers always send ``Origin`` on such requests; tools like
curl send none, and are not affected.
"""

from __future__ import annotations

import ipaddress
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


def host_allowed(host: str | None, allowed: Iterable[str]) -> bool:
    """Whether a ``Host`` header names this server (see the module docstring)."""
    name = _host_name(host)
    if name is None:
        return False
    if name == "localhost" or name.endswith(".localhost") or _is_ip_literal(name):
        return True
    for pattern in allowed:
        pattern = pattern.lower()
        if pattern == "*" or name == pattern:
            return True
        if pattern.startswith("*.") and name.endswith(pattern[1:]):
            return True
    return False


def _host_name(host: str | None) -> str | None:
    """The name of a ``Host`` header without its port, lowercased; None if malformed."""
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):  # [v6]:port
        closing = host.find("]")
        return host[1:closing] if closing > 0 else None
    name, _, port = host.partition(":")
    if port and not port.isdigit():
        return None
    return name or None


def _is_ip_literal(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


def headers_of(scope: Scope) -> Mapping[str, str]:
    return {name.decode("latin-1"): value.decode("latin-1") for name, value in scope["headers"]}


class OriginGuard:
    """Refuses requests to a name that is not ours with 403 ``{"error":
    "forbidden_host"}``, and state-changing HTTP requests and WebSocket handshakes from
    foreign origins with 403 ``{"error": "forbidden_origin"}``."""

    def __init__(
        self, app: ASGIApp, allowed_origins: Iterable[str], allowed_hosts: Iterable[str] = ()
    ) -> None:
        self.app = app
        self.allowed = frozenset(allowed_origins)
        self.allowed_hosts = tuple(allowed_hosts)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = headers_of(scope)
        host = headers.get("host")
        if not host_allowed(host, self.allowed_hosts):
            await _refuse(
                scope,
                send,
                "forbidden_host",
                f"this server does not answer to the name {host or '(none)'!r}; the "
                "operator may list it in THREADLINE_ALLOWED_HOSTS",
            )
            return
        guarded = scope["type"] == "websocket" or scope["method"] not in SAFE_METHODS
        origin = headers.get("origin")
        if guarded and not origin_allowed(origin, host, self.allowed):
            await _refuse(
                scope,
                send,
                "forbidden_origin",
                f"requests from {origin} are not allowed; list the origin in "
                "THREADLINE_CORS_ORIGINS to allow it",
            )
            return
        await self.app(scope, receive, send)


async def _refuse(scope: Scope, send: Send, code: str, message: str) -> None:
    body = orjson.dumps({"error": code, "message": message})
    if scope["type"] == "websocket":
        # Refusing the handshake: the client sees HTTP 403.
        await send({"type": "websocket.close", "code": 1008, "reason": code.replace("_", " ")})
        return
    await send(
        {
            "type": "http.response.start",
            "status": 403,
            "headers": [(b"content-type", b"application/json")],
        }
    )
    await send({"type": "http.response.body", "body": body})
