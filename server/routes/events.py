"""REST: a conversation's events (OpenHands V0 paging plus filters), user actions, and
full-text search across conversations."""

from __future__ import annotations

from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from events import EventFilter, build_filter, parse_event
from server.auth import public_id
from server.errors import BadRequest, NotFound, json_response
from server.http import (
    bool_param,
    caller,
    int_param,
    list_param,
    read_json,
    target,
    writable_target,
)
from server.imports import wants_lines
from server.service import ConversationService
from server.streamed import StreamedBody
from storage import MAX_PAGE, ConversationNotFound, SearchHit, SearchResults


def _service(request: Request) -> ConversationService:
    return request.app.state.service


def _filter(request: Request) -> EventFilter | None:
    params = request.query_params
    fields = {
        "query": params.get("query"),
        "include_types": list_param(request, "include_types"),
        "exclude_types": list_param(request, "exclude_types"),
        "source": params.get("source") or None,
        "start_date": params.get("start_date") or None,
        "end_date": params.get("end_date") or None,
        "exclude_hidden": bool_param(request, "exclude_hidden"),
    }
    event_filter = build_filter(**fields)
    return None if event_filter.is_empty() else event_filter


async def list_events(request: Request) -> Response:
    """``start_id``..``end_id`` (inclusive), ``reverse``, ``limit`` 1..100, and the
    `EventFilter` fields as query parameters. Answers ``{"events": [...], "has_more"}``."""
    service, _, record = await target(request)
    start_id = int_param(request, "start_id", 0, low=0) or 0
    end_id = int_param(request, "end_id", None, low=0)
    limit = int_param(request, "limit", 20, low=1, high=MAX_PAGE) or 20
    page = await service.storage.search_events(
        record.id,
        start_id=start_id,
        end_id=end_id,
        reverse=bool_param(request, "reverse"),
        filter=_filter(request),
        limit=limit,
    )
    # The stored bytes are the wire format: assemble the answer without re-serializing.
    body = b'{"events":[' + b",".join(event.data for event in page.events) + b'],"has_more":'
    body += b"true}" if page.has_more else b"false}"
    return Response(body, media_type="application/json")


async def count_events(request: Request) -> Response:
    service, _, record = await target(request)
    count = await service.storage.count_events(
        record.id,
        start_id=int_param(request, "start_id", 0, low=0) or 0,
        end_id=int_param(request, "end_id", None, low=0),
        filter=_filter(request),
    )
    return json_response({"count": count})


async def post_event(request: Request) -> Response:
    """A user action in wire shape (a message, a command, a change of agent state)."""
    service, user, conversation_id = await writable_target(request)
    document = await read_json(request)
    if not isinstance(document, dict):
        raise BadRequest("the body must be an event object", code="invalid_event")
    try:
        stored = await service.user_event(conversation_id, parse_event(document), user, via="rest")
    except ConversationNotFound:
        service.known.forget(conversation_id)
        raise NotFound(f"conversation {public_id(conversation_id)!r} not found") from None
    return json_response({"status": "ok", "event_id": stored.id})


async def search(request: Request) -> Response:
    """Full-text search over the caller's conversations, newest first. With
    ``?format=jsonl`` (or ``Accept: application/x-ndjson``) every hit from ``cursor`` on,
    one per line, streamed; ``limit`` then caps the number of lines."""
    user = await caller(request)
    service = _service(request)
    query = request.query_params.get("q", "")
    if not query.strip():
        raise BadRequest("q is required", field="q")
    cursor = request.query_params.get("cursor") or None
    if wants_lines(request):
        most = int_param(request, "limit", None, low=1)
        first = await service.storage.search_all(
            query, owner=user.name, limit=MAX_PAGE, cursor=cursor
        )
        return StreamedBody(
            _hit_lines(service, query, user.name, first, most),
            media_type="application/x-ndjson",
            headers={"X-Search-Pending": str(first.pending)},
        )
    limit = int_param(request, "limit", 20, low=1, high=MAX_PAGE) or 20
    results = await service.storage.search_all(query, owner=user.name, limit=limit, cursor=cursor)
    hits = b",".join(_hit(hit) for hit in results.hits)
    tail = orjson.dumps({"next_cursor": results.next_cursor, "pending": results.pending})
    return Response(b'{"results":[' + hits + b"]," + tail[1:], media_type="application/json")


async def _hit_lines(
    service: ConversationService,
    query: str,
    owner: str | None,
    results: SearchResults,
    most: int | None,
) -> AsyncIterator[bytes]:
    """Every hit from the first page on, following cursors, at most ``most``."""
    left = most
    while True:
        hits = results.hits if left is None else results.hits[:left]
        if hits:
            yield b"\n".join(_hit(hit) for hit in hits) + b"\n"
        if left is not None:
            left -= len(hits)
        if results.next_cursor is None or left == 0:
            return
        results = await service.storage.search_all(
            query, owner=owner, limit=MAX_PAGE, cursor=results.next_cursor
        )


def _hit(hit: SearchHit) -> bytes:
    return b'{"conversation_id":%s,"conversation_title":%s,"event":%s}' % (
        orjson.dumps(public_id(hit.conversation_id)),
        orjson.dumps(hit.conversation_title),
        hit.event.data,
    )


routes = [
    Route("/api/conversations/{conversation_id}/events", list_events, methods=["GET"]),
    Route("/api/conversations/{conversation_id}/events", post_event, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/events/count", count_events, methods=["GET"]),
    Route("/api/events/search", search, methods=["GET"]),
]
