"""REST: conversations and their lifecycle."""

from __future__ import annotations

import dataclasses

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import User, public_id
from server.errors import json_response
from server.http import caller, int_param, read_model, target
from server.schemas import CreateConversation, SendMessage, UpdateConversation, conversation_info
from server.service import Control, ConversationService
from storage import ConversationNotFound, ConversationPatch


def _service(request: Request) -> ConversationService:
    return request.app.state.service


async def create_conversation(request: Request) -> Response:
    """Create a conversation; with an initial message its agent starts at once."""
    user = await caller(request)
    body = await read_model(request, CreateConversation)
    service = _service(request)
    record = await service.create(body, user)
    return json_response(
        {
            "status": "ok",
            "conversation_id": public_id(record.id),
            "conversation_status": record.status,
            "queue_position": service.sessions.queue_position(record.id),
        },
        status=201,
    )


async def list_conversations(request: Request) -> Response:
    """Newest first; ``page_id`` continues from ``next_page_id``."""
    user = await caller(request)
    service = _service(request)
    limit = int_param(request, "limit", 20, low=1, high=100)
    page = await service.storage.list_conversations(
        owner=user.name, limit=limit or 20, cursor=request.query_params.get("page_id") or None
    )
    return json_response(
        {
            "results": [
                conversation_info(record, service.live(record), service.settings.llm_currency)
                for record in page.conversations
            ],
            "next_page_id": page.next_cursor,
        }
    )


async def get_conversation(request: Request) -> Response:
    service, _, record = await target(request)
    if record.status == "QUEUED":
        await service.sessions.refresh()  # its place, as of now (in a cluster)
    return json_response(
        conversation_info(record, service.live(record), service.settings.llm_currency)
    )


async def update_conversation(request: Request) -> Response:
    service, _, record = await target(request)
    body = await read_model(request, UpdateConversation)
    record = await service.storage.update_conversation(
        record.id, ConversationPatch(title=body.title)
    )
    return json_response(
        conversation_info(record, service.live(record), service.settings.llm_currency)
    )


async def delete_conversation(request: Request) -> Response:
    """Stop the conversation if it runs, then delete it and its events."""
    service, _, record = await target(request)
    await service.delete(record.id)
    request.app.state.streams.end_conversation(record.id)
    return json_response({"status": "ok"})


async def start_conversation(request: Request) -> Response:
    """Admit a run: it starts, or waits in the queue, or (policy reject) 429."""
    service, _, record = await target(request)
    position = await service.start(record.id)
    return await _status(service, record.id, queue_position=position)


async def stop_conversation(request: Request) -> Response:
    return await _control(request, "stop")


async def pause_conversation(request: Request) -> Response:
    """Hold the agent before its next action (409 when it is not running)."""
    return await _control(request, "pause")


async def resume_conversation(request: Request) -> Response:
    """Release a pause, raise a tripped limit, or start a run when none is active."""
    return await _control(request, "resume")


async def _control(request: Request, command: Control) -> Response:
    service, user, record = await target(request)
    await service.control(record.id, command, user, via="rest")
    return await _status(service, record.id)


async def _status(service: ConversationService, conversation_id: str, **extra: object) -> Response:
    record = await service.storage.get_conversation(conversation_id)
    if record.status == "QUEUED":
        await service.sessions.refresh()
    live = service.live(record)
    return json_response(
        {
            "status": "ok",
            "conversation_id": public_id(record.id),
            "conversation_status": live["status"],
            "agent_state": live.get("agent_state", record.agent_state),
            "queue_position": live["queue_position"],
            **extra,
        }
    )


async def get_plan(request: Request) -> Response:
    """The current task-tracking plan: the last plan applied, and the event that did."""
    service, _, record = await target(request)
    tasks, event_id = await service.plan(record.id)
    return json_response({"event_id": event_id, "tasks": [task.model_dump() for task in tasks]})


async def sessions(request: Request) -> Response:
    """Running and queued conversations, and the caps. Other users' conversations are
    counted, not named."""
    user = await caller(request)
    service = _service(request)
    manager = service.sessions
    await manager.refresh()
    running, queued = manager.running, manager.queued
    visible = await _visible_ids(service, user, [*running, *queued])
    return json_response(
        {
            "running": [public_id(cid) for cid in running if cid in visible],
            "queued": [
                {"conversation_id": public_id(cid), "position": position}
                for position, cid in enumerate(queued, start=1)
                if cid in visible
            ],
            "running_count": len(running),
            "queued_count": len(queued),
            "caps": dataclasses.asdict(manager.caps),
        }
    )


async def _visible_ids(service: ConversationService, user: User, ids: list[str]) -> set[str]:
    if user.name is None:
        return set(ids)
    visible = set()
    for conversation_id in ids:
        try:
            if (await service.storage.get_conversation(conversation_id)).owner == user.name:
                visible.add(conversation_id)
        except ConversationNotFound:
            continue
    return visible


async def send_message(request: Request) -> Response:
    """Log a user message and hand it to the agent (starting a run if none is active)."""
    service, _, record = await target(request)
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
    Route("/api/conversations/{conversation_id}/pause", pause_conversation, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/resume", resume_conversation, methods=["POST"]),
    Route("/api/conversations/{conversation_id}/plan", get_plan, methods=["GET"]),
    Route("/api/sessions", sessions, methods=["GET"]),
    Route("/api/conversations/{conversation_id}/message", send_message, methods=["POST"]),
]
