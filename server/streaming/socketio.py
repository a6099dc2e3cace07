"""Socket.IO on ``/socket.io``: the OpenHands V0 protocol.

A client connects with query ``conversation_id``, ``latest_event_id`` (default -1) and
``session_api_key``; it receives every event after ``latest_event_id`` as ``oh_event``,
first from the log, then live, with no gap and no duplicate. It sends actions as
``oh_user_action`` (alias ``oh_action``); the acknowledgement says ``{"status": "ok",
"event_id": n}`` or ``{"status": "error", "error": ..., "message": ...}``. A refused
connection gets ``connect_error`` with the reason.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qs

import engineio.packet
import orjson
import socketio
from starlette.datastructures import State

from events import ThreadlineError, parse_event
from server.errors import ApiError, as_api_error
from server.settings import Settings
from server.streaming.access import StreamRequest, open_stream
from storage import StoredEvent

logger = logging.getLogger(__name__)


class _OrjsonCodec:
    """python-socketio's ``json`` hook: orjson, and `orjson.Fragment` carries an event's
    stored bytes into the packet without parsing them."""

    @staticmethod
    def dumps(value: Any, **_: Any) -> str:
        return orjson.dumps(value).decode()

    @staticmethod
    def loads(text: str | bytes, **_: Any) -> Any:
        return orjson.loads(text)


class SocketIOStreams:
    def __init__(self, state: State, settings: Settings) -> None:
        self._state = state
        self.sio = socketio.AsyncServer(
            async_mode="asgi",
            json=_OrjsonCodec,
            # None: the server's own origin only. (An empty list would turn the check off.)
            cors_allowed_origins=list(settings.cors_origins) or None,
            ping_interval=settings.heartbeat_interval,
            logger=False,
            engineio_logger=False,
        )
        self._pumps: dict[str, asyncio.Task[None]] = {}
        self.sio.on("connect", self._connect)
        self.sio.on("disconnect", self._disconnect)
        self.sio.on("oh_user_action", self._user_action)
        self.sio.on("oh_action", self._user_action)

    def asgi(self, other: Callable[..., Any]) -> socketio.ASGIApp:
        return socketio.ASGIApp(self.sio, other_asgi_app=other, socketio_path="socket.io")

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
            request = await open_stream(
                self._state.storage,
                self._state.authenticator,
                conversation_id=query.get("conversation_id"),
                key=key,
                latest_event_id=query.get("latest_event_id"),
            )
        except ApiError as exc:
            raise socketio.exceptions.ConnectionRefusedError(
                exc.message, {"error": exc.code}
            ) from None
        await self.sio.save_session(sid, {"request": request})
        self._pumps[sid] = asyncio.create_task(self._pump(sid, request), name=f"socketio-{sid}")

    async def _disconnect(self, sid: str, *_: Any) -> None:
        pump = self._pumps.pop(sid, None)
        if pump is not None:
            pump.cancel()

    async def _pump(self, sid: str, request: StreamRequest) -> None:
        # Each event goes to the client's Engine.IO socket as a ready-made Socket.IO
        # EVENT packet (the stored bytes spliced in), through python-engineio's public
        # `send`. `sio.emit(to=sid)` would spawn a task per recipient and re-encode the
        # payload for each one; for a log fanned out to many watchers that was most of
        # the cost of a delivery.
        eio_sid = self.sio.manager.eio_sid_from_sid(sid, "/")
        subscription = self._state.storage.subscribe(request.conversation_id, request.after_id)
        subscription.direct = self._direct_sender(eio_sid)
        try:
            with self._state.streams.track(subscription):
                async for event in subscription:
                    await self.sio.eio.send(eio_sid, _event_packet(event.data))
        except ThreadlineError as exc:
            logger.info("stream %s ended: %s", sid, exc)
        finally:
            if self._pumps.get(sid) is asyncio.current_task():
                del self._pumps[sid]
                if self._state.streams.closing:
                    await self.sio.disconnect(sid)

    def _direct_sender(self, eio_sid: str) -> Callable[[StoredEvent], bool] | None:
        """Live events for a caught-up client go straight onto its Engine.IO socket's
        send queue, from the log writer's publish: no task of ours wakes per event.
        (python-engineio's `send` does just this put, after a ping-timeout check its
        ping task also makes.) None when this engineio keeps no such queue."""
        socket = self.sio.eio.sockets.get(eio_sid)
        queue = getattr(socket, "queue", None)
        if socket is None or queue is None:
            return None

        def send(event: StoredEvent) -> bool:
            if socket.closing or socket.closed:
                return False
            queue.put_nowait(
                engineio.packet.Packet(engineio.packet.MESSAGE, _event_packet(event.data))
            )
            return True

        return send

    async def _user_action(self, sid: str, data: Any) -> dict[str, Any]:
        session = await self.sio.get_session(sid)
        request: StreamRequest = session["request"]
        try:
            stored = await self._state.service.user_event(
                request.conversation_id, parse_event(data), request.user, via="socketio"
            )
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("oh_user_action failed in %s", request.conversation_id)
                return {"status": "error", "error": "internal", "message": "internal server error"}
            return {"status": "error", **error.body()}
        return {"status": "ok", "event_id": stored.id}


def _event_packet(data: bytes) -> str:
    """``2["oh_event",<event>]``: a Socket.IO EVENT packet for the default namespace."""
    return '2["oh_event",' + data.decode() + "]"


def _bearer(header: str) -> str | None:
    scheme, _, token = header.partition(" ")
    return token.strip() or None if scheme.lower() == "bearer" else None
