"""REST: start tasks (reference 000, OpenHands' ``/api/v1/app-conversations``)."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import User, scoped_id
from server.errors import BadRequest, NotFound, json_response
from server.http import caller, list_param, read_model
from server.tasks import Automation
from server.tasks.models import START, StartConversation
from server.tasks.starts import start_task_response
from storage import TaskNotFound, TaskRecord

MAX_BATCH = 100


def _automation(request: Request) -> Automation:
    return request.app.state.automation


async def _start_task(automation: Automation, user: User, task_id: str) -> TaskRecord | None:
    try:
        task = await automation.storage.get_task(scoped_id(user, task_id))
    except TaskNotFound:
        return None
    if task.kind != START or (user.name is not None and task.owner != user.name):
        return None
    return task


async def start_conversation(request: Request) -> Response:
    """Answer at once with a start task in WORKING; its status then walks the start."""
    user = await caller(request)
    body = await read_model(request, StartConversation)
    opened = await _automation(request).starts.create(user, body)
    return json_response(start_task_response(opened.task, str(request.base_url)))


async def get_start_task(request: Request) -> Response:
    user = await caller(request)
    task = await _start_task(_automation(request), user, request.path_params["task_id"])
    if task is None:
        raise NotFound(f"start task {request.path_params['task_id']!r} not found")
    return json_response(start_task_response(task, str(request.base_url)))


async def batch_get_start_tasks(request: Request) -> Response:
    """``?ids=a&ids=b``: a list in the order asked, null where a task is missing (or
    another user's), as OpenHands answers."""
    user = await caller(request)
    ids = list_param(request, "ids")
    if not ids:
        raise BadRequest("ids: give one or more start task ids", field="ids")
    if len(ids) > MAX_BATCH:
        raise BadRequest(f"ids: at most {MAX_BATCH} at once", field="ids")
    automation = _automation(request)
    found: list[dict[str, Any] | None] = []
    for task_id in ids:
        task = await _start_task(automation, user, task_id)
        found.append(start_task_response(task, str(request.base_url)) if task else None)
    return json_response(found)


routes = [
    Route("/api/v1/app-conversations", start_conversation, methods=["POST"]),
    Route("/api/v1/app-conversations/start-tasks", batch_get_start_tasks, methods=["GET"]),
    Route("/api/v1/app-conversations/start-tasks/{task_id}", get_start_task, methods=["GET"]),
]
