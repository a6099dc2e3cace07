"""Plain WebSocket at ``/api/conversations/{id}/events`` (the REST path, WebSocket scope).

Query ``latest_event_id`` (default -1) and, when keys are required, ``session_api_key``
(or the usual headers). Each message the server sends is one event as JSON text, in id
order, with no gap and no duplicate. The client may send actions as JSON text; a bad one
is answered with ``{"error": ..., "message": ...}`` and changes nothing. A refused
connection is accepted, told why in one such message, and closed with code 4400 + the
HTTP status (4401, 4404, ...). Keep-alive pings are the server's WebSocket pings.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging

import orjson
from starlette.websockets import WebSocket, WebSocketDisconnect

from events import ThreadlineError, parse_event
from server.auth import key_from_headers
from server.errors import ApiError, as_api_error
from server.streaming.access import StreamRequest, open_stream

logger = logging.getLogger(__name__)


async def events_socket(websocket: WebSocket) -> None:
    state = websocket.app.state
    try:
        request = await open_stream(
            state.storage,
            state.authenticator,
            conversation_id=websocket.path_params["conversation_id"],
            key=websocket.query_params.get("session_api_key")
            or key_from_headers(websocket.headers),
            latest_event_id=websocket.query_params.get("latest_event_id"),
        )
    except ApiError as exc:
        await websocket.accept()
        await websocket.send_text(orjson.dumps(exc.body()).decode())
        await websocket.close(code=4000 + exc.status, reason=exc.message[:120])
        return
    await websocket.accept()
    sender = asyncio.create_task(_send_events(websocket, request))
    try:
        await _receive_actions(websocket, request)
    finally:
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


async def _send_events(websocket: WebSocket, request: StreamRequest) -> None:
    state = websocket.app.state
    subscription = state.storage.subscribe(request.conversation_id, request.after_id)
    try:
        with state.streams.track(subscription):
            async for event in subscription:
                await websocket.send_text(event.data.decode())
    except ThreadlineError as exc:
        logger.info("websocket stream ended: %s", exc)
    except (WebSocketDisconnect, RuntimeError):
        return
    # The stream ended on our side (conversation deleted, server shutting down).
    with contextlib.suppress(RuntimeError, WebSocketDisconnect):
        await websocket.close(code=1001 if state.streams.closing else 1000)


async def _receive_actions(websocket: WebSocket, request: StreamRequest) -> None:
    service = websocket.app.state.service
    while True:
        try:
            text = await websocket.receive_text()
        except (WebSocketDisconnect, RuntimeError):
            return
        try:
            # The action reaches this client like any other event: through the stream.
            await service.user_event(
                request.conversation_id, parse_event(text), request.user, via="websocket"
            )
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                logger.exception("websocket action failed in %s", request.conversation_id)
                body = {"error": "internal", "message": "internal server error"}
            else:
                body = error.body()
            await websocket.send_text(orjson.dumps(body).decode())
