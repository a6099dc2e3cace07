"""Socket.IO on ``/socket.io``: the OpenHands V0 protocol, over a `StreamSession`.

A client connects with query ``conversation_id``, ``latest_event_id`` (default -1) and
``session_api_key``; it receives every event after ``latest_event_id`` as ``oh_event``,
first from the log, then live, with no gap and no duplicate. It sends actions as
``oh_user_action`` (alias ``oh_action``); the acknowledgement says ``{"status": "ok",
"event_id": n}`` or ``{"status": "error", "error": ..., "message": ...}``. A refused
connection gets ``connect_error`` with the reason. When the session ends on the server's
side (key revoked, conversation deleted, shutdown) the client gets ``oh_stream_closed``
``{"error", "message"}`` and is disconnected.

With ``replay=1`` in the query the stream is a paced replay (`server.streaming.pacing`):
the replay's news come as ``oh_replay``, and ``oh_replay_control`` takes its controls
(the acknowledgement is the replay's state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import orjson
import socketio
from starlette.datastructures import State

from server.errors import ApiError, as_api_error
from server.settings import Settings
from server.streaming.engineio_adapter import BoundedSocketIO, FrameGuard, Outbox, quiet_logger
from server.streaming.frames import FrameWriter, frame_writer
from server.streaming.pacing import ReplayNotice
from server.streaming.session import CLIENT_LEFT, StreamSession
from storage import StoredEvent, Subscription

logger = logging.getLogger(__name__)


class _OrjsonCodec:
    """python-socketio's ``json`` hook: orjson."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class SocketIOStreams:
    def __init__(self, state: State, settings: Settings) -> None:
        self._state = state
        self.sio = BoundedSocketIO(
            send_buffer_bytes=settings.stream_buffer_bytes,
            async_mode="asgi",
            json=_OrjsonCodec,
            # None: the server's own origin only. (An empty list would turn the check off.)
            cors_allowed_origins=list(settings.cors_origins) or None,
            ping_interval=settings.heartbeat_interval,
            max_http_buffer_size=settings.max_message_bytes,
            logger=quiet_logger("threadline.socketio"),
            engineio_logger=quiet_logger("threadline.engineio"),
        )
        self._max_message_bytes = settings.max_message_bytes
        self._writers: dict[str, FrameWriter] = {}
        """Frame writers of clients that connected on a WebSocket, by sid."""
        self._upgrades: dict[str, FrameWriter] = {}
        """Frame writers of WebSockets upgrading long-polling sessions (`FrameGuard`)."""
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self._sessions: dict[str, StreamSession] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("oh_user_action", self._user_action)
        self.sio.on("oh_action", self._user_action)
        self.sio.on("oh_replay_control", self._replay_control)

    def asgi(self, other: Callable[..., Any]) -> Callable[..., Any]:
        app = socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path="socket.io")
        return FrameGuard(app, "/socket.io", self._max_message_bytes, self._upgrades)

    async def _connect(self, sid: str, environ: dict[str, Any], auth: Any = None) -> None:
        query = {
            name: values[0] for name, values in parse_qs(environ.get("QUERY_STRING", "")).items()
        }
        key = query.get("session_api_key")
        if not key and isinstance(auth, dict):
            key = auth.get("session_api_key")
        if not key:
            key = environ.get("HTTP_X_SESSION_API_KEY") or _bearer(
                environ.get("HTTP_AUTHORIZATION", "")
            )
        try:
            session = await self._state.streams.open(
                transport="socketio",
                conversation_id=query.get("conversation_id"),
                key=key,
                latest_event_id=query.get("latest_event_id"),
                query=query,
                until=query.get("until"),
            )
        except ApiError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"error": exc.code}
            ) from None
        self._sessions[sid] = session
        writer = frame_writer(environ.get("asgi.scope") or {})
        if writer is not None:
            self._writers[sid] = writer
        self._pumps[sid] = asyncio.create_task(self._pump(sid, session), name=f"socketio-{sid}")

    async def _disconnect(self, sid: str, *_: Any) -> None:
        session = self._sessions.pop(sid, None)
        self._writers.pop(sid, None)
        if session is not None:
            session.close(CLIENT_LEFT)
        pump = self._pumps.pop(sid, None)
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()

    async def _pump(self, sid: str, session: StreamSession) -> None:
        # Each event goes to the client's Engine.IO socket as a ready-made Socket.IO
        # EVENT packet (the stored bytes spliced in): `sio.emit(to=sid)` would spawn a
        # task per recipient and re-encode the payload for each one. Once the client is
        # caught up, the subscription hands new events straight to the outbox from the
        # writer's publish (no task of ours wakes per event): on a WebSocket with
        # nothing pending, as one frame shared by all clients, written to the
        # connection (`server.streaming.frames`); else onto the queue while it has room.
        outbox = Outbox(self.sio, sid, self._writers.get(sid), self._upgrades)
        subscription = session.subscription
        # With until=end, each event is looked at.
        if session.end_after is None and isinstance(subscription, Subscription):
            subscription.direct = _direct(outbox)
        async for event in session:
            if isinstance(event, ReplayNotice):
                await outbox.send('2["oh_replay",' + event.data.decode() + "]")
                continue
            await outbox.send(_event_packet(event.data))
        ending = session.ending
        if ending is not None and ending is not CLIENT_LEFT and sid in self._sessions:
            await self.sio.emit("oh_stream_closed", ending.body(), to=sid)
            await self.sio.disconnect(sid)

    async def _user_action(self, sid: str, data: Any = None) -> dict[str, Any]:
        session = self._sessions.get(sid)
        if session is None:
            return {"status": "error", "error": "not_found", "message": "no open session"}
        try:
            if data is None:
                raise ApiError(
                    "oh_user_action needs an event object", field="data", code="invalid_event"
                )
            stored = await session.post(data)
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("oh_user_action failed in %s", session.conversation_id)
                return {"status": "error", "error": "internal", "message": "internal server error"}
            return {"status": "error", **error.body()}
        return {"status": "ok", "event_id": stored.id}

    async def _replay_control(self, sid: str, data: Any = None) -> dict[str, Any]:
        session = self._sessions.get(sid)
        if session is None:
            return {"status": "error", "error": "not_found", "message": "no open session"}
        try:
            state = await session.control(data if data is not None else {})
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("oh_replay_control failed in %s", session.conversation_id)
                return {"status": "error", "error": "internal", "message": "internal server error"}
            return {"status": "error", **error.body()}
        return {"status": "ok", **state}


def _direct(outbox: Outbox) -> Callable[[StoredEvent], bool]:
    def offer(event: StoredEvent) -> bool:
        return outbox.offer_event(event.data)

    return offer


def _event_packet(data: bytes) -> str:
    """``2["oh_event",<event>]``: a Socket.IO EVENT packet for the default namespace."""
    return '2["oh_event",' + data.decode() + "]"


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
