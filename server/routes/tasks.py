"""REST: background tasks (reference 003) and the single-task API (reference 002).

The single-task paths (``/api/tasks/submit``, ``/status``, ...) are listed before
``/api/tasks/{task_id}``, and generated task ids (``task-`` and 32 hex digits) can never
equal them.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from pydantic import ValidationError
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import User, public_id, scoped_id
from server.errors import BadRequest, NotFound, json_response
from server.http import caller, int_param, read_json, read_model, validation_error
from server.routes.deliveries import deliveries_response
from server.tasks import Automation
from server.tasks.background import task_response
from server.tasks.control import brief
from server.tasks.models import BACKGROUND, FINAL, OPEN, SINGLE, CreateTask, SubmitTask, TaskControl
from storage import TaskNotFound, TaskRecord

STATUSES = (*OPEN, *FINAL)


def _automation(request: Request) -> Automation:
    return request.app.state.automation


async def visible_task(automation: Automation, user: User, task_id: str) -> TaskRecord:
    """The caller's background or single task; others' answer like missing ones."""
    try:
        task = await automation.storage.get_task(scoped_id(user, task_id))
    except TaskNotFound:
        task = None
    if (
        task is None
        or task.kind not in (BACKGROUND, SINGLE)
        or (user.name is not None and task.owner != user.name)
    ):
        raise NotFound(f"task {task_id!r} not found")
    return task


def _shown(automation: Automation, task: TaskRecord) -> dict[str, object]:
    return task_response(task, automation.service.sessions.queue_position(task.id))


async def create_task(request: Request) -> Response:
    """Create a background task: it runs, or waits in the queue by its priority."""
    user = await caller(request)
    body = await read_model(request, CreateTask)
    automation = _automation(request)
    opened = await automation.tasks.create(user, body)
    return json_response(task_response(opened.task, opened.queue_position))


async def list_tasks(request: Request) -> Response:
    user = await caller(request)
    automation = _automation(request)
    status = request.query_params.get("status") or None
    if status is not None and status not in STATUSES:
        raise BadRequest(f"status must be one of {', '.join(STATUSES)}", field="status")
    page = await automation.storage.list_tasks(
        owner=user.name,
        kinds=[BACKGROUND, SINGLE],
        statuses=[status] if status else None,
        limit=int_param(request, "limit", 20, low=1, high=100) or 20,
        cursor=request.query_params.get("cursor") or None,
    )
    return json_response(
        {
            "tasks": [_shown(automation, task) for task in page.tasks],
            "next_cursor": page.next_cursor,
        }
    )


async def get_task(request: Request) -> Response:
    user = await caller(request)
    automation = _automation(request)
    task = await visible_task(automation, user, request.path_params["task_id"])
    return json_response(_shown(automation, task))


async def cancel_task(request: Request) -> Response:
    """Cancel before the start (taken out of the queue) or after (the run is stopped);
    409 once it has ended."""
    user = await caller(request)
    automation = _automation(request)
    task = await visible_task(automation, user, request.path_params["task_id"])
    reason = f"cancelled by {user.name or 'the local user'}"
    cancelled = await automation.tasks.cancel(task, user, reason)
    return json_response(_shown(automation, cancelled))


async def task_deliveries(request: Request) -> Response:
    user = await caller(request)
    automation = _automation(request)
    task = await visible_task(automation, user, request.path_params["task_id"])
    return await deliveries_response(request, automation, origin=f"task:{task.id}")


# -- the single-task API ---------------------------------------------------------------


async def submit(request: Request) -> Response:
    """Submit the caller's task (409 naming the active one while one is open)."""
    user = await caller(request)
    body = await read_model(request, SubmitTask)
    opened = await _automation(request).single.submit(user, body)
    task = opened.task
    return json_response(
        {
            "success": True,
            "message": "task submitted",
            "task_id": public_id(task.id),
            "session_id": task.spec.get("session_id"),
            "status": task.status,
            "llm_profile_name": task.spec.get("llm_profile_name"),
            "queue_position": opened.queue_position,
        }
    )


def _operation(name: str) -> Callable[[Request], Awaitable[Response]]:
    async def handler(request: Request) -> Response:
        user = await caller(request)
        body = TaskControl()
        if await request.body():
            document = await read_json(request)
            if not isinstance(document, dict):
                raise BadRequest("the body must be a JSON object", code="invalid_request")
            try:
                body = TaskControl.model_validate(document)
            except ValidationError as exc:
                raise validation_error(exc) from None
        return json_response(await _automation(request).single.control(user, name, body))

    handler.__doc__ = f"{name} the caller's active task (409 when there is none)"
    return handler


async def status(request: Request) -> Response:
    user = await caller(request)
    return json_response(await _automation(request).single.status(user))


async def detailed_status(request: Request) -> Response:
    user = await caller(request)
    return json_response(await _automation(request).single.detailed(user))


routes = [
    Route("/api/tasks", create_task, methods=["POST"]),
    Route("/api/tasks", list_tasks, methods=["GET"]),
    Route("/api/tasks/submit", submit, methods=["POST"]),
    Route("/api/tasks/pause", _operation("pause"), methods=["POST"]),
    Route("/api/tasks/resume", _operation("resume"), methods=["POST"]),
    Route("/api/tasks/stop", _operation("stop"), methods=["POST"]),
    Route("/api/tasks/add-new-task", _operation("add_new_task"), methods=["POST"]),
    Route("/api/tasks/status", status, methods=["GET"]),
    Route("/api/tasks/detailed-status", detailed_status, methods=["GET"]),
    Route("/api/tasks/{task_id}", get_task, methods=["GET"]),
    Route("/api/tasks/{task_id}/cancel", cancel_task, methods=["POST"]),
    Route("/api/tasks/{task_id}/webhooks/deliveries", task_deliveries, methods=["GET"]),
]

__all__ = ["brief", "routes"]
