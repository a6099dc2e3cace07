"""`create_app`: the ASGI application (Starlette for REST, python-socketio beside it)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.responses import Response
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.staticfiles import StaticFiles

from events import ThreadlineError
from server.auth import Authenticator
from server.errors import handle_error, handle_http_exception, handle_internal_error
from server.openapi import build_openapi
from server.origins import OriginGuard
from server.routes import conversations, events, meta, trajectory
from server.service import ConversationService
from server.settings import Settings
from server.streaming.registry import StreamSessions
from server.streaming.socketio import SocketIOStreams
from server.streaming.sse import event_stream
from server.streaming.websocket import events_socket
from storage import Storage
from storage.sqlite import SqliteStorage

Application = Any  # an ASGI callable


def create_app(settings: Settings, *, storage: Storage | None = None) -> Application:
    """Build the server. Without ``storage`` it opens SQLite in ``settings.data_dir`` at
    startup and closes it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = storage or await SqliteStorage.open(
            settings.storage_dir,
            subscriber_buffer=settings.subscriber_buffer,
            subscriber_buffer_bytes=settings.stream_buffer_bytes,
        )
        service = ConversationService(store, settings)
        authenticator = Authenticator(store)
        app.state.storage = store
        app.state.service = service
        app.state.authenticator = authenticator
        app.state.streams = StreamSessions(store, authenticator, service, settings)
        try:
            await service.recover()
            # Everything built so far lives as long as the server: keep it out of the
            # collector's full passes, which otherwise stall delivery for 100+ ms once
            # thousands of subscribers are connected.
            gc.freeze()
            yield
        finally:
            await prepare_shutdown(app)
            if storage is None:
                await store.close()

    starlette = Starlette(
        routes=[
            *trajectory.routes,
            *conversations.routes,
            *events.routes,
            WebSocketRoute("/api/conversations/{conversation_id}/events", events_socket),
            Route("/api/conversations/{conversation_id}/events/stream", event_stream),
            *meta.routes,
            # The page (server/static): last, so every route above wins.
            Mount("/", RevalidatedStaticFiles(packages=[("server", "static")], html=True)),
        ],
        middleware=_middleware(settings),
        exception_handlers={
            ThreadlineError: handle_error,
            HTTPException: handle_http_exception,
            Exception: handle_internal_error,
        },
        lifespan=lifespan,
    )
    starlette.state.settings = settings
    starlette.state.openapi = build_openapi()
    socketio_streams = SocketIOStreams(starlette.state, settings)
    application = OriginGuard(
        socketio_streams.asgi(starlette), settings.cors_origins, settings.allowed_hosts
    )
    application.state = starlette.state  # type: ignore[attr-defined]  # for tests and the CLI
    return application


async def prepare_shutdown(app: Any) -> None:
    """Stop every run (each records why), then end every live stream. Idempotent."""
    state = app.state
    if getattr(state, "shut_down", False):
        return
    state.shut_down = True
    if hasattr(state, "service"):
        await state.service.shutdown()
    if hasattr(state, "streams"):
        await state.streams.aclose()


class RevalidatedStaticFiles(StaticFiles):
    """The page's files, revalidated on every load: after an upgrade a browser must not
    mix cached modules of the old version with new ones."""

    def file_response(self, *args: Any, **kwargs: Any) -> Response:
        response = super().file_response(*args, **kwargs)
        response.headers["Cache-Control"] = "no-cache"
        return response


def _middleware(settings: Settings) -> list[Middleware]:
    if not settings.cors_origins:
        return []
    return [
        Middleware(
            CORSMiddleware,
            allow_origins=list(settings.cors_origins),
            allow_methods=["*"],
            allow_headers=["*"],
            expose_headers=["*"],
        )
    ]
