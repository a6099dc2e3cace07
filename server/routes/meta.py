"""REST: health and readiness, metrics, the OpenAPI document and the docs page."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import HTMLResponse, Response
from starlette.routing import Route

from server.errors import ServiceUnavailable, json_response
from server.health import readiness
from server.openapi import build_openapi, render_docs


async def health(request: Request) -> Response:
    """Liveness; ``keys_required`` tells a client whether to ask for an API key."""
    keys_required = await request.app.state.authenticator.keys_required()
    return json_response({"status": "ok", "keys_required": keys_required})


async def alive(request: Request) -> Response:
    """Liveness, for probes that should not touch anything (same as ``/healthz``)."""
    return json_response({"status": "ok"})


async def ready(request: Request) -> Response:
    """200 when the storage takes writes, the search index is caught up and a sandbox
    could start; else 503 naming each problem."""
    checks = await readiness(request.app.state)
    problems = {name: problem for name, problem in checks.items() if problem}
    if problems:
        error = ServiceUnavailable(
            "not ready: " + "; ".join(f"{name}: {problem}" for name, problem in problems.items()),
            retry_after=5,
            checks={name: problem or "ok" for name, problem in checks.items()},
        )
        return json_response(error.body(), error.status, error.headers())
    return json_response({"status": "ready", "checks": dict.fromkeys(checks, "ok")})


async def metrics(request: Request) -> Response:
    """Prometheus text exposition (see server/metrics.py)."""
    body, content_type = await request.app.state.metrics.render()
    return Response(body, media_type=content_type)


async def openapi(request: Request) -> Response:
    return json_response(request.app.state.openapi)


async def docs(request: Request) -> Response:
    return HTMLResponse(render_docs(request.app.state.openapi))


routes = [
    Route("/api/health", health, methods=["GET"]),
    Route("/alive", alive, methods=["GET"]),
    Route("/healthz", alive, methods=["GET"]),
    Route("/readyz", ready, methods=["GET"]),
    Route("/metrics", metrics, methods=["GET"]),
    Route("/openapi.json", openapi, methods=["GET"]),
    Route("/docs", docs, methods=["GET"]),
]

__all__ = ["build_openapi", "routes"]
