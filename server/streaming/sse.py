"""Server-Sent Events at ``GET /api/conversations/{id}/events/stream``.

Each event is sent with ``id:`` = its event id, so a browser's ``EventSource``
reconnects on its own with ``Last-Event-ID`` and resumes with no gap and no duplicate.
``latest_event_id`` in the query does the same for a first connection. ``EventSource``
cannot send headers, so the key may come as ``session_api_key`` in the query.
Idle streams carry a comment every heartbeat interval.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse

from server.auth import key_from_headers
from server.streaming.access import StreamRequest, open_stream

RETRY_MS = 2000


async def event_stream(request: Request) -> Response:
    state = request.app.state
    stream = await open_stream(
        state.storage,
        state.authenticator,
        conversation_id=request.path_params["conversation_id"],
        key=request.query_params.get("session_api_key") or key_from_headers(request.headers),
        latest_event_id=request.headers.get("last-event-id")
        or request.query_params.get("latest_event_id"),
    )
    return StreamingResponse(
        _frames(request, stream),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _frames(request: Request, stream: StreamRequest) -> AsyncIterator[bytes]:
    state = request.app.state
    heartbeat = state.settings.heartbeat_interval
    yield b"retry: %d\n\n" % RETRY_MS
    subscription = state.storage.subscribe(stream.conversation_id, stream.after_id)
    with state.streams.track(subscription):
        events = aiter(subscription)
        while True:
            try:
                event = await asyncio.wait_for(anext(events), heartbeat)
            except TimeoutError:
                yield b": keep-alive\n\n"
                continue
            except StopAsyncIteration:
                return
            yield b"id: %d\ndata: %s\n\n" % (event.id, event.data)
