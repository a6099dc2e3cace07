"""REST: conversations and their lifecycle."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import visible_conversation
from server.errors import json_response
from server.http import caller, int_param, read_model
from server.schemas import CreateConversation, SendMessage, UpdateConversation, conversation_info
from server.service import ConversationService
from storage import ConversationPatch


def _service(request: Request) -> ConversationService:
    return request.app.state.service  # type: ignore[no-any-return]


async def create_conversation(request: Request) -> Response:
    """Create a conversation; with an initial message its agent starts at once."""
    user = await caller(request)
    body = await read_model(request, CreateConversation)
    record = await _service(request).create(body, user)
    return json_response(
        {"status": "ok", "conversation_id": record.id, "conversation_status": record.status},
        status=201,
    )


async def list_conversations(request: Request) -> Response:
    """Newest first; ``page_id`` continues from ``next_page_id``."""
    user = await caller(request)
    limit = int_param(request, "limit", 20, low=1, high=100)
    page = await _service(request).storage.list_conversations(
        owner=user.name, limit=limit or 20, cursor=request.query_params.get("page_id") or None
    )
    return json_response(
        {
            "results": [conversation_info(record) for record in page.conversations],
            "next_page_id": page.next_cursor,
        }
    )


async def get_conversation(request: Request) -> Response:
    user = await caller(request)
    record = await visible_conversation(
        _service(request).storage, user, request.path_params["conversation_id"]
    )
    return json_response(conversation_info(record))


async def update_conversation(request: Request) -> Response:
    user = await caller(request)
    service = _service(request)
    record = await visible_conversation(
        service.storage, user, request.path_params["conversation_id"]
    )
    body = await read_model(request, UpdateConversation)
    record = await service.storage.update_conversation(
        record.id, ConversationPatch(title=body.title)
    )
    return json_response(conversation_info(record))


async def delete_conversation(request: Request) -> Response:
    """Stop the conversation if it runs, then delete it and its events."""
    user = await caller(request)
    service = _service(request)
    record = await visible_conversation(
        service.storage, user, request.path_params["conversation_id"]
    )
    await service.delete(record.id)
    return json_response({"status": "ok"})


async def start_conversation(request: Request) -> Response:
    user = await caller(request)
    service = _service(request)
    record = await visible_conversation(
        service.storage, user, request.path_params["conversation_id"]
    )
    await service.start(record.id)
    record = await service.storage.get_conversation(record.id)
    return json_response(
        {"status": "ok", "conversation_id": record.id, "conversation_status": record.status}
    )


async def stop_conversation(request: Request) -> Response:
    user = await caller(request)
    service = _service(request)
    record = await visible_conversation(
        service.storage, user, request.path_params["conversation_id"]
    )
    await service.stop(record.id)
    record = await service.storage.get_conversation(record.id)
    return json_response(
        {"status": "ok", "conversation_id": record.id, "conversation_status": record.status}
    )


async def send_message(request: Request) -> Response:
    """Log a user message and hand it to the agent (starting a run if none is active)."""
    user = await caller(request)
    service = _service(request)
    record = await visible_conversation(
        service.storage, user, request.path_params["conversation_id"]
    )
    body = await read_model(request, SendMessage)
    stored = await service.send_message(record.id, body.message, body.image_urls)
    return json_response({"status": "ok", "event_id": stored.id})


routes = [
    Route("/api/conversations", create_conversation, methods=["POST"]),
    Route("/api/conversations", list_conversations, methods=["GET"]),
    Route("/api/conversations/{conversation_id}", get_conversation, methods=["GET"]),
    Route("/api/conversations/{conversation_id}", update_conversation, methods=["PATCH"]),
    Route("/api/conversations/{conversation_id}", delete_conversation, methods=["DELETE"]),
    Route("/api/conversations/{conversation_id}/start", start_conversation, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/stop", stop_conversation, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/message", send_message, methods=["POST"]),
]
