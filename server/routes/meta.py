"""REST: health, the OpenAPI document and the docs page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server.errors import json_response
from server.openapi import build_openapi, render_docs


async def health(request: Request) -> Response:
    """Liveness; ``keys_required`` tells a client whether to ask for an API key."""
    keys_required = await request.app.state.authenticator.keys_required()
    return json_response({"status": "ok", "keys_required": keys_required})


async def alive(request: Request) -> Response:
    return json_response({"status": "ok"})


async def openapi(request: Request) -> Response:
    return json_response(request.app.state.openapi)


async def docs(request: Request) -> Response:
    return HTMLResponse(render_docs(request.app.state.openapi))


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/alive", alive, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]

__all__ = ["build_openapi", "routes"]
