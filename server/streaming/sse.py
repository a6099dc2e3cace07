"""Server-Sent Events at ``GET /api/conversations/{id}/events/stream``, over a
`StreamSession`.

Each event is sent with ``id:`` = its event id, so a browser's ``EventSource``
reconnects on its own with ``Last-Event-ID`` and resumes with no gap and no duplicate.
``latest_event_id`` in the query does the same for a first connection. With
``until=end`` the stream ends (``event: end``) after the event that ends the current run
(its agent state becomes finished, stopped, error or rejected), so ``curl`` returns. ``EventSource``
cannot send headers, so the key may come as ``session_api_key`` in the query. Idle
streams carry a comment every heartbeat interval. A session that ends on the server's
side sends ``event: closed`` with ``{"error", "message"}`` before the response ends.

With ``replay=1`` the stream is a paced replay (`server.streaming.pacing`): its news
come as ``event: replay``, and controls are posted to
``POST /api/conversations/{id}/replay/{replay_id}`` (an ``EventSource`` cannot send).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.auth import key_from_headers
from server.streaming.pacing import ReplayNotice
from server.streaming.session import CLIENT_LEFT, RUN_ENDED, StreamSession

RETRY_MS = 2000


async def event_stream(request: Request) -> Response:
    session = await request.app.state.streams.open(
        transport="sse",
        conversation_id=request.path_params["conversation_id"],
        key=request.query_params.get("session_api_key") or key_from_headers(request.headers),
        latest_event_id=request.headers.get("last-event-id")
        or request.query_params.get("latest_event_id"),
        query=request.query_params,
        until=request.query_params.get("until"),
    )
    return StreamingResponse(
        _frames(session, request.app.state.settings.heartbeat_interval),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(session: StreamSession, heartbeat: float) -> AsyncIterator[bytes]:
    try:
        yield b"retry: %d\n\n" % RETRY_MS
        events = aiter(session)
        while True:
            try:
                event = await asyncio.wait_for(anext(events), heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            except StopAsyncIteration:
                break
            if isinstance(event, ReplayNotice):
                yield b"event: replay\ndata: %s\n\n" % event.data
                continue
            yield b"id: %d\ndata: %s\n\n" % (event.id, event.data)
        ending = session.ending
        if ending is RUN_ENDED:
            yield b"event: end\ndata: %s\n\n" % orjson.dumps({"reason": ending.message})
        elif ending is not None and ending is not CLIENT_LEFT:
            yield b"event: closed\ndata: %s\n\n" % orjson.dumps(ending.body())
    finally:
        session.close(CLIENT_LEFT)
