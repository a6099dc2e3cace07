"""The OpenAPI paths of tasks, schedules and webhooks (merged into `build_openapi`)."""

from __future__ import annotations

from typing import Any

from server.tasks.models import CreateTask, StartConversation, SubmitTask, TaskControl, WebhookSpec
from server.tasks.schedule_models import CreateSchedule, ScheduleChanges

REST = ("413", "401", "429")
WRITE = ("503", "507")


def _path(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


def _body(model: type) -> dict[str, Any]:
    schema = model.model_json_schema()  # type: ignore[attr-defined]  # $defs kept inside
    return {"required": True, "content": {"application/json": {"schema": schema}}}


def paths(responses: Any) -> dict[str, Any]:
    """``responses(description, errors)`` builds an operation's answers (see openapi.py)."""

    def op(summary: str, ok: str, errors: tuple[str, ...], **extra: Any) -> dict[str, Any]:
        return {"summary": summary, "responses": responses(ok, (*REST, *errors)), **extra}

    task_id = {"parameters": [_path("task_id")]}
    flow_id = {"parameters": [_path("flow_id")]}
    conversation = {"parameters": [_path("conversation_id")]}
    deliveries = [
        _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
        _query("before", {"type": "integer", "minimum": 1}, "next_cursor of the newer page"),
    ]
    control = {
        "required": False,
        "content": {"application/json": {"schema": TaskControl.model_json_schema()}},
    }
    single = "the caller's active task (409 no_active_task when there is none)"
    return {
        "/api/v1/app-conversations": {
            "post": op(
                "Start a conversation; answers at once with a start task (WORKING) whose "
                "status walks WAITING_FOR_SANDBOX, PREPARING_REPOSITORY, RUNNING_SETUP_SCRIPT, "
                "SETTING_UP_GIT_HOOKS, STARTING_CONVERSATION to READY (or ERROR with detail); "
                "403: the local runtime is refused with API keys on",
                "the start task",
                ("400", "403", *WRITE),
                requestBody=_body(StartConversation),
            )
        },
        "/api/v1/app-conversations/start-tasks": {
            "get": op(
                "Start tasks by id (?ids=a&ids=b): a list in that order, null where missing",
                "a list of start tasks or nulls",
                ("400",),
                parameters=[
                    {
                        **_query(
                            "ids",
                            {"type": "array", "items": {"type": "string"}},
                            "start task ids (at most 100)",
                        ),
                        "required": True,
                    }
                ],
            )
        },
        "/api/v1/app-conversations/start-tasks/{task_id}": {
            **task_id,
            "get": op("A start task", "the start task", ("404",)),
        },
        "/api/tasks": {
            "post": op(
                "Create a background task (task_type conversation or shell; priority 1-10; "
                "timeout_seconds); 429 at the cap with policy reject, 503 when the queue is "
                "full (Retry-After)",
                "the task (status created)",
                ("400", "403", *WRITE),
                requestBody=_body(CreateTask),
            ),
            "get": op(
                "The caller's tasks, newest first",
                "tasks and next_cursor",
                ("400",),
                parameters=[
                    _query(
                        "status",
                        {"enum": ["created", "running", "completed", "failed", "cancelled"]},
                        "only tasks in this status",
                    ),
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "size"),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                ],
            ),
        },
        "/api/tasks/submit": {
            "post": op(
                "Submit the caller's single task (409 task_running, naming the active one)",
                "success, task_id, session_id, status",
                ("400", "403", "409", *WRITE),
                requestBody=_body(SubmitTask),
            )
        },
        **{
            f"/api/tasks/{name}": {
                "post": op(
                    f"{name.replace('-', ' ').capitalize()} {single}",
                    "success, message, operation",
                    ("400", "409", *WRITE),
                    requestBody=control,
                )
            }
            for name in ("pause", "resume", "stop", "add-new-task")
        },
        "/api/tasks/status": {
            "get": op("Whether the caller has an active single task", "has_active_task", ())
        },
        "/api/tasks/detailed-status": {
            "get": op(
                "The caller's latest single task: result, error, pause and stop reasons, "
                "progress from its plan, report paths",
                "the detailed status",
                (),
            )
        },
        "/api/tasks/{task_id}": {**task_id, "get": op("A task", "the task", ("404",))},
        "/api/tasks/{task_id}/cancel": {
            **task_id,
            "post": op(
                "Cancel a task before or after its start (409 once it has ended)",
                "the cancelled task",
                ("404", "409", *WRITE),
            ),
        },
        "/api/tasks/{task_id}/webhooks/deliveries": {
            **task_id,
            "get": op(
                "Webhook attempts of the task",
                "deliveries, next_cursor",
                ("400", "404"),
                parameters=deliveries,
            ),
        },
        "/api/schedule": {
            "post": op(
                "Create a schedule (400 naming a bad cron_expression or timezone; 409 for a "
                "flow_id taken)",
                "the schedule",
                ("400", "409", *WRITE),
                requestBody=_body(CreateSchedule),
            ),
            "get": op("The caller's schedules", "a list of schedules", ()),
        },
        "/api/schedule/{flow_id}": {
            **flow_id,
            "get": op("A schedule", "the schedule", ("404",)),
            "put": op(
                "Change a schedule",
                "the schedule",
                ("400", "404", *WRITE),
                requestBody=_body(ScheduleChanges),
            ),
            "delete": op("Delete a schedule (its log stays)", "deleted", ("404", *WRITE)),
        },
        "/api/schedule/{flow_id}/webhooks/deliveries": {
            **flow_id,
            "get": op(
                "Webhook attempts of the schedule and its runs",
                "deliveries",
                ("400", "404"),
                parameters=deliveries,
            ),
        },
        "/api/conversations/{conversation_id}/webhook": {
            **conversation,
            "put": op(
                "Set the conversation's webhook (replacing any)",
                "the webhook",
                ("400", "404", *WRITE),
                requestBody=_body(WebhookSpec),
            ),
            "get": op("The conversation's webhook (never its secret)", "the webhook", ("404",)),
            "delete": op("Remove the conversation's webhook", "removed", ("404", *WRITE)),
        },
        "/api/conversations/{conversation_id}/webhooks/deliveries": {
            **conversation,
            "get": op(
                "Webhook attempts for the conversation's events",
                "deliveries",
                ("400", "404"),
                parameters=deliveries,
            ),
        },
    }
