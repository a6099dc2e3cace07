"""REST: webhooks on conversations, and every delivery attempt, wherever the webhook was
set (a conversation, a task, a schedule and its runs)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import public_id
from server.errors import NotFound, json_response
from server.http import int_param, read_model, target
from server.tasks import Automation
from server.tasks.models import WebhookSpec
from storage import DeliveryRecord, WebhookRecord


async def deliveries_response(
    request: Request, automation: Automation, *, origin: str | None = None,
    conversation_id: str | None = None,
) -> Response:  # fmt: skip
    """A page of attempts, newest first; ``before`` continues from ``next_cursor``."""
    page = await automation.storage.list_deliveries(
        origin=origin,
        conversation_id=conversation_id,
        limit=int_param(request, "limit", 50, low=1, high=100) or 50,
        before=int_param(request, "before", None, low=1),
    )
    return json_response(
        {
            "deliveries": [delivery_info(delivery) for delivery in page.deliveries],
            "next_cursor": page.next_cursor,
        }
    )


def delivery_info(delivery: DeliveryRecord) -> dict[str, Any]:
    return {
        "id": delivery.id,
        "event_id": f"{public_id(delivery.conversation_id)}:{delivery.event_id}",
        "conversation_id": public_id(delivery.conversation_id),
        "event": delivery.event_id,
        "event_kind": delivery.event_kind,
        "attempt": delivery.attempt,
        "outcome": delivery.outcome,
        "http_status": delivery.http_status,
        "error": delivery.error,
        "duration_ms": delivery.duration_ms,
        "at": delivery.at.isoformat(),
    }


def webhook_info(hook: WebhookRecord) -> dict[str, Any]:
    """A webhook as shown: never its secret."""
    return {
        "conversation_id": public_id(hook.conversation_id),
        "url": hook.url,
        "events": hook.event_kinds,
        "delivered_through": hook.delivered_through,
        "created_at": hook.created_at.isoformat(),
    }


def _automation(request: Request) -> Automation:
    return request.app.state.automation


async def put_webhook(request: Request) -> Response:
    """Set the conversation's webhook (replacing any); deliveries start from event 0."""
    _, user, record = await target(request)
    spec = await read_model(request, WebhookSpec)
    hook = await _automation(request).webhooks.attach(
        record.id, user.name, f"conversation:{record.id}", spec
    )
    return json_response(webhook_info(hook))


async def get_webhook(request: Request) -> Response:
    _, _, record = await target(request)
    hook = await _automation(request).storage.get_webhook(record.id)
    if hook is None:
        raise NotFound("the conversation has no webhook")
    return json_response(webhook_info(hook))


async def delete_webhook(request: Request) -> Response:
    _, _, record = await target(request)
    if not await _automation(request).webhooks.detach(record.id):
        raise NotFound("the conversation has no webhook")
    return json_response({"status": "ok"})


async def conversation_deliveries(request: Request) -> Response:
    _, _, record = await target(request)
    return await deliveries_response(request, _automation(request), conversation_id=record.id)


routes = [
    Route("/api/conversations/{conversation_id}/webhook", put_webhook, methods=["PUT"]),
    Route("/api/conversations/{conversation_id}/webhook", get_webhook, methods=["GET"]),
    Route("/api/conversations/{conversation_id}/webhook", delete_webhook, methods=["DELETE"]),
    Route(
        "/api/conversations/{conversation_id}/webhooks/deliveries",
        conversation_deliveries,
        methods=["GET"],
    ),
]
