"""The single-task API (reference 002): each user has at most one active task.

``submit`` refuses (409, naming the active task) while the caller's latest submitted
task is still open; pause / resume / stop / add-new-task act on that task through the
same control path as conversations (logged as ``change_agent_state`` actions, then
carried out), and each records a ``task_state`` event with its reason. ``status`` and
``detailed-status`` describe the caller's latest submitted task (active or not).
"""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

from server.auth import User, public_id
from server.errors import BadRequest, Conflict
from server.service import Control
from server.tasks.background import TaskRuns, new_task_id
from server.tasks.ledger import Opened, TaskLedger, conversation_request
from server.tasks.models import CREATED, OPEN, RUNNING, SINGLE, SubmitTask, TaskControl
from server.tasks.results import progress
from storage import NewTask, TaskRecord


class SingleTasks:
    def __init__(self, ledger: TaskLedger, runs: TaskRuns) -> None:
        self.ledger = ledger
        self.runs = runs
        self.service = ledger.service
        self._submitting: defaultdict[str | None, asyncio.Lock] = defaultdict(asyncio.Lock)

    async def current(self, user: User) -> TaskRecord | None:
        page = await self.ledger.storage.list_tasks(owner=user.name, kinds=[SINGLE], limit=1)
        return page.tasks[0] if page.tasks else None

    async def active(self, user: User) -> TaskRecord:
        task = await self.current(user)
        if task is None or task.status not in OPEN:
            raise Conflict("there is no active task", code="no_active_task")
        return task

    async def submit(self, user: User, body: SubmitTask) -> Opened:
        async with self._submitting[user.name]:
            task = await self.current(user)
            if task is not None and task.status in OPEN:
                raise Conflict(
                    "another task is running; stop it or wait for it to end",
                    code="task_running",
                    active_task=brief(task),
                )
            task_id = new_task_id()
            request = conversation_request(
                {"initial_user_msg": "task_description"},
                conversation_id=task_id, title=body.task_description[:60],
                initial_user_msg=body.task_description, agent=body.agent,
                repository=body.repository, max_iterations=body.max_iterations,
                max_budget_per_task=body.max_budget_per_task,
            )  # fmt: skip
            spec = {
                "task_type": "conversation",
                "description": body.task_description,
                "session_id": body.session_id or public_id(task_id),
                "llm_profile_name": body.llm_profile_name,
                "agent_mode": body.agent_mode,
                "upload_files_path": body.upload_files_path,
            }
            new = NewTask(
                kind=SINGLE, status=CREATED, priority=5,
                timeout_seconds=body.timeout_seconds, spec=spec,
            )  # fmt: skip
            return await self.ledger.open(user, request, new, webhook=body.webhook, trigger="task")

    async def control(self, user: User, operation: str, body: TaskControl) -> dict[str, Any]:
        """pause, resume, stop or add_new_task on the caller's active task."""
        task = await self.active(user)
        reason = body.reason or ""
        if operation == "stop":
            await self.ledger.change(
                task, reason=f"stop: {reason}", outcome={"stop_reason": reason}
            )
            fresh = await self.ledger.storage.get_task(task.id)
            final = await self.runs.cancel(fresh, user, reason or "stopped by the user")
            return _answer(True, f"task {final.status}", "stop")
        if operation == "add_new_task":
            if not reason:
                raise BadRequest("add-new-task needs the new task in 'reason'", field="reason")
            await self.service.send_message(task.id, reason)
            await self.ledger.change(task, reason=f"new task added: {reason}")
            return {**_answer(True, "new task added", "add_new_task"), "new_task": reason}
        command: Control = "pause" if operation == "pause" else "resume"
        await self.service.control(task.id, command, user, via="tasks api")
        field = "pause_reason" if command == "pause" else "resume_reason"
        await self.ledger.change(task, reason=f"{command}d: {reason}", outcome={field: reason})
        return _answer(True, f"task {command}d", command)

    async def status(self, user: User) -> dict[str, Any]:
        task = await self.current(user)
        active = task is not None and task.status in OPEN
        return {"has_active_task": active, "active_task": brief(task) if active else None}

    async def detailed(self, user: User) -> dict[str, Any]:
        task = await self.current(user)
        if task is None:
            return {"has_active_task": False, "task_id": None, "status": None}
        record = await self.service.storage.get_conversation(task.id)
        live = self.service.live(record)
        plan, _ = await self.service.plan(task.id)
        steps = progress(plan)
        outcome = task.outcome
        return {
            "has_active_task": task.status in OPEN,
            "task_id": public_id(task.id),
            "status": shown_status(task, live.get("agent_state", record.agent_state)),
            "session_id": task.spec.get("session_id"),
            "task": task.spec.get("description"),
            "start_time": task.started_at.isoformat() if task.started_at else None,
            "end_time": task.finished_at.isoformat() if task.finished_at else None,
            "result": outcome.get("result"),
            "error": outcome.get("error"),
            "pause_reason": outcome.get("pause_reason"),
            "stop_reason": outcome.get("stop_reason"),
            "report_paths": outcome.get("report_paths", []),
            "conversation_id": public_id(task.id),
            "agent_state": live.get("agent_state", record.agent_state),
            "plan": [item.model_dump() for item in plan],
            "vibesurf_status": {
                "overall_status": task.status,
                "active_step": steps["active_step"],
                "agent_statuses": {"agent": live.get("agent_state", record.agent_state)},
                "progress": steps["progress"],
                "last_update": task.updated_at.isoformat(),
            },
        }


def shown_status(task: TaskRecord, agent_state: str | None) -> str:
    """The task's status, or ``paused`` while its running agent is held."""
    if task.status == RUNNING and agent_state == "paused":
        return "paused"
    return task.status


def brief(task: TaskRecord | None) -> dict[str, Any] | None:
    if task is None:
        return None
    return {
        "task_id": public_id(task.id),
        "status": task.status,
        "session_id": task.spec.get("session_id"),
        "start_time": (task.started_at or task.created_at).isoformat(),
    }


def _answer(success: bool, message: str, operation: str) -> dict[str, Any]:
    return {"success": success, "message": message, "operation": operation}
