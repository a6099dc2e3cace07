"""REST: a whole conversation out (``GET .../trajectory``) and a recording in
(``POST /api/conversations/import``), in OpenHands' trajectory shape or as JSON Lines.

Exports stream: the log is walked by id pages up to the newest event at the start of the
request, and each page's stored bytes are written as they are, so memory stays flat
however long the conversation is.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events import EventFilter, build_filter
from server.auth import public_id, scoped_id
from server.errors import BadRequest, json_response
from server.http import bool_param, caller, target
from server.imports import read_body, recording_documents, recording_events, title_of, wants_lines
from server.replays import import_and_replay, replay_mode
from server.schemas import check_conversation_id
from server.service import ConversationService
from server.streamed import StreamedBody
from storage import MAX_PAGE, NewConversation, Storage, StoredEvent
from storage.models import new_conversation_id

JSON_LINES = "application/x-ndjson"


async def export_trajectory(request: Request) -> Response:
    """``{"trajectory": [...]}`` (hidden events left out unless ``include_hidden``), or
    the same events one per line with ``?format=jsonl`` / ``Accept: application/x-ndjson``."""
    service, _, record = await target(request)
    lines = wants_lines(request)
    hidden = bool_param(request, "include_hidden")
    last_id = await service.storage.latest_event_id(record.id)
    pages = walk_pages(
        service.storage, record.id, last_id, None if hidden else build_filter(exclude_hidden=True)
    )
    filename = f"{public_id(record.id)}.{'jsonl' if lines else 'json'}"
    headers = {"Content-Disposition": f'attachment; filename="{filename}"'}
    if lines:
        return StreamedBody(_as_lines(pages), media_type=JSON_LINES, headers=headers)
    return StreamedBody(_as_trajectory(pages), media_type="application/json", headers=headers)


async def import_conversation(request: Request) -> Response:
    """A recording (the trajectory shape, one event, or JSON Lines) becomes a new
    conversation holding its events, copied, not re-run; ``title`` and
    ``conversation_id`` as query parameters. Answers 201 with the id and the count.
    With ``replay_mode=execute`` or ``recorded`` the copy is the recording of a replay
    started at once (`server.replays`), and the answer names both."""
    user = await caller(request)
    service: ConversationService = request.app.state.service
    settings = service.settings
    conversation_id = request.query_params.get("conversation_id") or new_conversation_id()
    try:
        check_conversation_id(conversation_id)
    except ValueError as exc:
        raise BadRequest(f"conversation_id: {exc}", field="conversation_id") from None
    title = request.query_params.get("title", "")
    if len(title) > 200:
        raise BadRequest("title: must be at most 200 characters", field="title")
    mode = replay_mode(request.query_params.get("replay_mode"), "view")
    lines = wants_lines(request)
    body = await read_body(request, settings.import_max_bytes)
    documents = await asyncio.to_thread(recording_documents, body, lines=lines, name="trajectory")
    del body
    if mode != "view":
        replay, source = await import_and_replay(
            service, user, documents, mode, name="trajectory",
            title=title or title_of(documents), conversation_id=conversation_id,
        )  # fmt: skip
        return json_response(
            {
                "status": "ok",
                "conversation_id": public_id(replay.id),
                "conversation_status": replay.status,
                "replay_mode": mode,
                "recording_id": public_id(source.id),
                "queue_position": service.sessions.queue_position(replay.id),
            },
            status=201,
        )
    new = NewConversation(
        id=scoped_id(user, conversation_id),
        owner=user.name,
        title=title or title_of(documents),
        trigger="import",
        max_iterations=settings.max_iterations,
        settings={"agent": settings.agent},
    )
    record, stored = await service.storage.create_conversation_with_events(
        new, recording_events(documents, name="trajectory")
    )
    return json_response(
        {
            "status": "ok",
            "conversation_id": public_id(record.id),
            "conversation_status": record.status,
            "events": len(stored),
        },
        status=201,
    )


async def walk_pages(
    storage: Storage, conversation_id: str, last_id: int, event_filter: EventFilter | None
) -> AsyncIterator[list[StoredEvent]]:
    """Pages of events with ids up to ``last_id``, in id order."""
    start: int | None = 0
    while start is not None and start <= last_id:
        page = await storage.search_events(
            conversation_id, start_id=start, end_id=last_id, filter=event_filter, limit=MAX_PAGE
        )
        if page.events:
            yield page.events
        start = page.next_cursor


async def _as_lines(pages: AsyncIterator[list[StoredEvent]]) -> AsyncIterator[bytes]:
    async for page in pages:
        yield b"\n".join(event.data for event in page) + b"\n"


async def _as_trajectory(pages: AsyncIterator[list[StoredEvent]]) -> AsyncIterator[bytes]:
    separator = b'{"trajectory":['
    async for page in pages:
        yield separator + b",".join(event.data for event in page)
        separator = b","
    yield b"]}" if separator == b"," else b'{"trajectory":[]}'


routes = [
    Route("/api/conversations/import", import_conversation, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/trajectory", export_trajectory, methods=["GET"]),
]
