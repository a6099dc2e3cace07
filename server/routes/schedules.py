"""REST: cron schedules (reference 002's ``/schedule``), by ``flow_id``."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import public_id
from server.errors import json_response
from server.http import caller, read_model
from server.routes.deliveries import deliveries_response
from server.tasks import Automation
from server.tasks.schedule_models import CreateSchedule, ScheduleChanges
from server.tasks.schedules import schedule_response
from storage import ConversationNotFound, ScheduleRecord


def _automation(request: Request) -> Automation:
    return request.app.state.automation


async def _shown(automation: Automation, schedule: ScheduleRecord) -> dict[str, Any]:
    last_run = None
    if schedule.last_conversation_id is not None:
        try:
            record = await automation.storage.get_conversation(schedule.last_conversation_id)
            live = automation.service.live(record)
            last_run = {
                "conversation_id": public_id(record.id),
                "status": live["status"],
                "agent_state": live.get("agent_state", record.agent_state),
            }
        except ConversationNotFound:
            last_run = {"conversation_id": public_id(schedule.last_conversation_id)}
    return schedule_response(schedule, last_run)


async def create_schedule(request: Request) -> Response:
    """400 for a bad cron expression or time zone (naming it); 409 for a taken flow_id."""
    user = await caller(request)
    body = await read_model(request, CreateSchedule)
    automation = _automation(request)
    schedule = await automation.schedules.create(user, body)
    return json_response(await _shown(automation, schedule))


async def list_schedules(request: Request) -> Response:
    user = await caller(request)
    automation = _automation(request)
    schedules = await automation.schedules.list(user)
    return json_response([await _shown(automation, schedule) for schedule in schedules])


async def get_schedule(request: Request) -> Response:
    user = await caller(request)
    automation = _automation(request)
    schedule = await automation.schedules.get(user, request.path_params["flow_id"])
    return json_response(await _shown(automation, schedule))


async def update_schedule(request: Request) -> Response:
    user = await caller(request)
    body = await read_model(request, ScheduleChanges)
    automation = _automation(request)
    schedule = await automation.schedules.update(user, request.path_params["flow_id"], body)
    return json_response(await _shown(automation, schedule))


async def delete_schedule(request: Request) -> Response:
    user = await caller(request)
    await _automation(request).schedules.delete(user, request.path_params["flow_id"])
    return json_response({"status": "ok", "message": "schedule deleted"})


async def schedule_deliveries(request: Request) -> Response:
    """Webhook attempts of the schedule's log and of its runs."""
    user = await caller(request)
    automation = _automation(request)
    schedule = await automation.schedules.get(user, request.path_params["flow_id"])
    return await deliveries_response(request, automation, origin=f"schedule:{schedule.flow_id}")


routes = [
    Route("/api/schedule", create_schedule, methods=["POST"]),
    Route("/api/schedule", list_schedules, methods=["GET"]),
    Route("/api/schedule/{flow_id}", get_schedule, methods=["GET"]),
    Route("/api/schedule/{flow_id}", update_schedule, methods=["PUT"]),
    Route("/api/schedule/{flow_id}", delete_schedule, methods=["DELETE"]),
    Route("/api/schedule/{flow_id}/webhooks/deliveries", schedule_deliveries, methods=["GET"]),
]
