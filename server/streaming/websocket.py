"""Plain WebSocket at ``/api/conversations/{id}/events`` (the REST path, WebSocket scope),
over a `StreamSession`.

Query ``latest_event_id`` (default -1) and, when keys are required, ``session_api_key``
(or the usual headers). Each message the server sends is one event as JSON text, in id
order, with no gap and no duplicate. The client may send actions as JSON text frames; a
bad one is answered with ``{"error": ..., "message": ...}`` and changes nothing. A
``until=end`` closes it (1000) after the event that ends the current run. A
refused connection is accepted, told why in one such message, and closed with code
4000 + the HTTP status (4400, 4401, 4404, 4429). A session that ends on the server's
side says why the same way (4401 key revoked, 4404 conversation deleted) or closes with
1001 when the server shuts down. A message over the size bound closes with 1009.
Keep-alive pings are the server's WebSocket pings.

With ``replay=1`` the stream is a paced replay (`server.streaming.pacing`): text frames
are replay controls, and the replay's news are messages ``{"replay": ...}``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from server.auth import key_from_headers
from server.errors import ApiError, PayloadTooLarge, as_api_error
from server.streaming.frames import FrameCache, FrameWriter, frame_writer, text_frame
from server.streaming.session import CLIENT_LEFT, RUN_ENDED, SHUTTING_DOWN, StreamSession
from storage import StoredEvent, Subscription

logger = logging.getLogger(__name__)

TOO_BIG = 1009
GOODBYE_SECONDS = 5.0
FRAMES = FrameCache(text_frame)
"""The frames of the events being published, shared by every plain WebSocket."""


async def events_socket(websocket: WebSocket) -> None:
    try:
        session = await websocket.app.state.streams.open(
            transport="websocket",
            conversation_id=websocket.path_params["conversation_id"],
            key=websocket.query_params.get("session_api_key")
            or key_from_headers(websocket.headers),
            latest_event_id=websocket.query_params.get("latest_event_id"),
            query=websocket.query_params,
            until=websocket.query_params.get("until"),
        )
    except ApiError as exc:
        await websocket.accept()
        await websocket.send_text(orjson.dumps(exc.body()).decode())
        await websocket.close(code=4000 + exc.status, reason=exc.message[:120])
        return
    try:
        await websocket.accept()
        writer = frame_writer(websocket.scope)
        subscription = session.subscription
        # Caught up, the client's next events are written from the log writer's publish
        # as shared, ready-made frames (`server.streaming.frames`); with until=end each
        # event is looked at, so they all take the task.
        if session.end_after is None and isinstance(subscription, Subscription):
            subscription.direct = None if writer is None else _direct(writer)
        sender = asyncio.create_task(_send_events(websocket, session))
        try:
            await _receive_actions(websocket, session)
        finally:
            if session.ending is None or session.ending is CLIENT_LEFT:
                session.close(CLIENT_LEFT)
                sender.cancel()
            # Else the session ended on our side: the sender's iteration is over and it
            # tells the client why (bounded, should the client not read).
            with contextlib.suppress(asyncio.CancelledError, TimeoutError):
                await asyncio.wait_for(sender, GOODBYE_SECONDS)
    finally:
        session.close(CLIENT_LEFT)


async def _send_events(websocket: WebSocket, session: StreamSession) -> None:
    try:
        async for event in session:
            await websocket.send_text(event.data.decode())
    except (WebSocketDisconnect, RuntimeError):
        return
    await _say_goodbye(websocket, session)


def _direct(writer: FrameWriter) -> Callable[[StoredEvent], bool]:
    def offer(event: StoredEvent) -> bool:
        return writer.write(FRAMES.frame(event.data))

    return offer


async def _say_goodbye(websocket: WebSocket, session: StreamSession) -> None:
    """The session ended on our side: tell the client why, in close-code terms."""
    ending = session.ending
    if ending is None or ending is CLIENT_LEFT:
        return
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        if ending is SHUTTING_DOWN:
            await websocket.close(code=1001, reason=ending.message[:120])
            return
        if ending is RUN_ENDED:
            await websocket.close(code=1000, reason=ending.message)
            return
        await websocket.send_text(orjson.dumps(ending.body()).decode())
        await websocket.close(code=4000 + ending.status, reason=ending.message[:120])


async def _receive_actions(websocket: WebSocket, session: StreamSession) -> None:
    while True:
        try:
            message = await websocket.receive()
        except (WebSocketDisconnect, RuntimeError):
            return
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            await _answer(
                websocket,
                {"error": "invalid_event", "message": "send events as JSON text frames"},
            )
            continue
        try:
            # The action reaches this client like any other event: through the stream
            # (a replay's controls are told there too).
            await (session.post(text) if session.replay is None else session.control(text))
        except PayloadTooLarge as exc:
            with contextlib.suppress(RuntimeError, WebSocketDisconnect):
                await websocket.close(code=TOO_BIG, reason=exc.message[:120])
            return
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("websocket action failed in %s", session.conversation_id)
                await _answer(websocket, {"error": "internal", "message": "internal server error"})
                continue
            if session.closed:
                return  # the sender says goodbye with the reason
            await _answer(websocket, error.body())


async def _answer(websocket: WebSocket, body: dict[str, object]) -> None:
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.send_text(orjson.dumps(body).decode())
