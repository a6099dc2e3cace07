"""`create_app`: the ASGI application (Starlette for REST, python-socketio beside it)."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import AsyncIterator, Callable
from typing import Any

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import ClientDisconnect
from starlette.routing import Mount, Route, WebSocketRoute
from starlette.types import Scope

from events import ThreadlineError
from server.auth import Authenticator
from server.bodies import BodyLimit
from server.errors import (
    handle_client_disconnect,
    handle_error,
    handle_http_exception,
    handle_internal_error,
)
from server.memory import MemoryReclaimer
from server.metrics import Metrics
from server.openapi import build_openapi
from server.origins import OriginGuard
from server.page import PageFiles
from server.ratelimit import Buckets, RateLimit, TokenBuckets
from server.routes import (
    conversations,
    deliveries,
    events,
    meta,
    replays,
    schedules,
    starts,
    tasks,
    trajectory,
)
from server.service import ConversationService
from server.settings import Settings
from server.streaming.engineio_adapter import EVENT_FRAMES
from server.streaming.registry import StreamSessions
from server.streaming.socketio import SocketIOStreams
from server.streaming.sse import event_stream
from server.streaming.websocket import FRAMES as WEBSOCKET_FRAMES
from server.streaming.websocket import events_socket
from server.tasks import Automation
from storage import Storage
from storage.sqlite import SqliteStorage

Application = Any  # an ASGI callable

GC_THRESHOLDS = (10_000, 20, 50)
"""The collector's generation thresholds (Python's default: 700, 10, 10). Each stream
holds a few hundred objects; under a reconnect storm the default ran a full collection
every few seconds, each stopping the event loop for ~200 ms (measured: 21 of them in a
55 s storm of 1,000 subscribers, health p99 0.1-2 s). With these, full passes are rare
under churn (storm health p99 30-55 ms), at the cost of cyclic garbage living longer."""


def create_app(settings: Settings, *, storage: Storage | None = None) -> Application:
    """Build the server. Without ``storage`` it opens SQLite in ``settings.data_dir`` at
    startup and closes it at shutdown."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        store = storage or await open_store(settings)
        service = ConversationService(store, settings)
        automation = Automation(service, settings)
        authenticator = Authenticator(store)
        app.state.storage = store
        app.state.service = service
        app.state.automation = automation
        app.state.authenticator = authenticator
        app.state.streams = StreamSessions(store, authenticator, service, settings)
        store.observe(app.state.metrics)
        automation.webhooks.gave_up = app.state.metrics.webhook_failures.inc
        reclaimer = MemoryReclaimer(
            lambda: len(app.state.streams), forget=(EVENT_FRAMES.clear, WEBSOCKET_FRAMES.clear)
        )
        shared_limits = app.state.shared_rate_limits  # in Redis (with --redis), or None
        try:
            if shared_limits is not None:
                await shared_limits.check()  # a warning now if Redis does not answer
            await automation.recover()  # tasks a crash left open, before runs recover
            await service.recover()
            await automation.start()
            # Everything built so far lives as long as the server: keep it out of the
            # collector's full passes, which otherwise stall delivery for 100+ ms once
            # thousands of subscribers are connected.
            gc.freeze()
            gc.set_threshold(*GC_THRESHOLDS)
            reclaimer.start()
            yield
        finally:
            await reclaimer.stop()
            await prepare_shutdown(app)
            if storage is None:
                await store.close()
            if shared_limits is not None:
                await shared_limits.aclose()

    starlette = Starlette(
        routes=[
            *trajectory.routes,
            *replays.routes,
            *conversations.routes,
            *events.routes,
            *tasks.routes,
            *starts.routes,
            *schedules.routes,
            *deliveries.routes,
            WebSocketRoute("/api/conversations/{conversation_id}/events", events_socket),
            Route("/api/conversations/{conversation_id}/events/stream", event_stream),
            *meta.routes,
            # The page (server/static): last, so every route above wins.
            Mount("/", PageFiles(packages=[("server", "static")], html=True)),
        ],
        middleware=_middleware(settings),
        exception_handlers={
            ThreadlineError: handle_error,
            HTTPException: handle_http_exception,
            ClientDisconnect: handle_client_disconnect,
            Exception: handle_internal_error,
        },
        lifespan=lifespan,
    )
    # A path that matches no route is 404, never a redirect to a neighbouring one.
    starlette.router.redirect_slashes = False
    starlette.state.settings = settings
    starlette.state.openapi = build_openapi()
    starlette.state.metrics = Metrics(starlette.state)
    starlette.state.shared_rate_limits = None
    socketio_streams = SocketIOStreams(starlette.state, settings)
    application: Any = OriginGuard(
        socketio_streams.asgi(starlette), settings.cors_origins, settings.allowed_hosts
    )
    application = BodyLimit(application, _body_cap(settings))
    if settings.rate_limit is not None:
        buckets = _rate_limits(settings, settings.rate_limit, starlette.state.metrics)
        starlette.state.rate_limits = buckets
        starlette.state.shared_rate_limits = buckets if settings.redis else None

        async def keys_required() -> bool:
            authenticator = getattr(starlette.state, "authenticator", None)
            return authenticator is not None and await authenticator.keys_required()

        # Engine.IO's long-polling requests are a stream's (its connection slot), and
        # liveness probes must not be refused for the traffic they are probing.
        def vouched(key: str | None) -> bool:
            authenticator = getattr(starlette.state, "authenticator", None)
            return authenticator is not None and authenticator.vouched(key)

        application = RateLimit(
            application,
            buckets,
            keys_required,
            vouched,
            exempt=("/socket.io", "/alive", "/api/health", "/healthz", "/readyz", "/metrics"),
        )
    application.state = starlette.state  # for tests and the CLI
    return application


def _rate_limits(settings: Settings, rate: float, metrics: Metrics) -> Buckets:
    """The process's own buckets, or with ``redis`` the cluster's (failing open to the
    process's own)."""
    if settings.redis is None:
        return TokenBuckets(rate, settings.rate_limit_burst)
    try:
        from server.redis_buckets import shared_buckets
    except ImportError as missing:
        raise ValueError(
            "redis needs the redis package: pip install 'threadline[redis]'"
        ) from missing
    return shared_buckets(
        settings.redis,
        rate,
        settings.rate_limit_burst,
        failed=metrics.rate_limit_store_errors.inc,
    )


def _body_cap(settings: Settings) -> Callable[[Scope], int]:
    """Imports (and creations, which may carry ``replay_json``) may carry a recording;
    every other body is an ordinary JSON request."""
    importing = ("/api/conversations", "/api/conversations/import")

    def cap(scope: Scope) -> int:
        if scope["method"] == "POST" and scope["path"].rstrip("/") in importing:
            return settings.import_max_bytes
        return settings.max_body_bytes

    return cap


async def open_store(settings: Settings) -> Storage:
    """The store the settings name: PostgreSQL at ``database``, else SQLite in the data
    directory."""
    buffer, buffer_bytes = settings.subscriber_buffer, settings.stream_buffer_bytes
    if settings.database:
        from storage.postgres import PostgresStorage

        return await PostgresStorage.open(
            settings.database, subscriber_buffer=buffer, subscriber_buffer_bytes=buffer_bytes
        )
    return await SqliteStorage.open(
        settings.storage_dir, subscriber_buffer=buffer, subscriber_buffer_bytes=buffer_bytes
    )


async def prepare_shutdown(app: Any) -> None:
    """Stop every run (each records why), then end every live stream. Idempotent."""
    state = app.state
    if getattr(state, "shut_down", False):
        return
    state.shut_down = True
    if hasattr(state, "automation"):
        await state.automation.close()  # no schedule fires while runs stop
    if hasattr(state, "service"):
        await state.service.shutdown()
    if hasattr(state, "automation"):
        await state.automation.close_webhooks()
    if hasattr(state, "streams"):
        await state.streams.aclose()


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
