"""Background tasks (and the single-task API's, which follow the same lifecycle).

A task is a conversation: ``conversation`` runs an agent on the description (or
``parameters.message``), ``shell`` runs ``parameters.command`` with the shell agent. It
follows its conversation's first run through the run owner's hooks (no polling):

    created --launched--> running --finished--> completed (a shell command that exits
                                                 non-zero: failed)
                                  --error/rejected--> failed
                                  --stopped--> cancelled (failed when its timeout did it)
    created --cancel--> cancelled (taken out of the queue)

``timeout_seconds`` counts from ``running``; when it passes the run is stopped and the
task fails saying so. A task left open by a crash is failed at the next start unless
its conversation is still queued (then it waits, and runs, as before).
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
from typing import TypeVar

from pydantic import ValidationError

from server.auth import User, public_id
from server.errors import BadRequest, Conflict
from server.http import validation_error
from server.run_listeners import RunOutcome
from server.runtimes import workspace_of
from server.schemas import CreateConversation
from server.tasks.ledger import Opened, TaskLedger, conversation_request
from server.tasks.models import (
    BACKGROUND,
    CANCELLED,
    COMPLETED,
    CREATED,
    FAILED,
    OPEN,
    RUNNING,
    SINGLE,
    ConversationParameters,
    CreateTask,
    ShellParameters,
)
from server.tasks.results import report_paths, task_result
from storage import ConversationNotFound, NewTask, TaskRecord


def new_task_id() -> str:
    return f"task-{secrets.token_hex(16)}"


class TaskRuns:
    def __init__(self, ledger: TaskLedger) -> None:
        self.ledger = ledger
        self.service = ledger.service
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._timed_out: set[str] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- creating --------------------------------------------------------------------

    async def create(self, user: User, body: CreateTask) -> Opened:
        request = task_conversation(body)
        spec = {
            "task_type": body.task_type,
            "description": body.description,
            "parameters": body.parameters,
        }
        task = NewTask(
            kind=BACKGROUND, status=CREATED, priority=body.priority,
            timeout_seconds=body.timeout_seconds, spec=spec,
        )  # fmt: skip
        return await self.ledger.open(user, request, task, webhook=body.webhook, trigger="task")

    # -- cancelling ------------------------------------------------------------------

    async def cancel(self, task: TaskRecord, user: User, reason: str) -> TaskRecord:
        """Cancel before the start (out of the queue) or after (the run is stopped);
        returns the task once cancelled. `Conflict` when it had already ended."""
        if task.status not in OPEN:
            raise Conflict(f"the task is already {task.status}", status=task.status)
        runs = self.service.runs
        running = runs.run_of(task.id) is not None
        with contextlib.suppress(ConversationNotFound):
            await self.service.control(task.id, "stop", user, via=f"tasks api ({reason})")
        if not running:  # it was queued: no run will end to record it
            await self.ledger.change(
                task, status=CANCELLED, reason=reason, only_from=OPEN, finished=True
            )
        return await self.ledger.wait_final(task.id)

    # -- following runs (the run owner's hooks) -------------------------------------

    async def launched(self, task: TaskRecord) -> None:
        if task.status != CREATED:
            return
        record = await self.ledger.change(
            task, status=RUNNING, reason="its run started", only_from=(CREATED,), started=True
        )
        if record is not None and record.timeout_seconds is not None:
            loop = asyncio.get_running_loop()
            self._timers[task.id] = loop.call_later(record.timeout_seconds, self._time_out, record)

    async def settled(self, task: TaskRecord, outcome: RunOutcome) -> None:
        if task.status not in OPEN or outcome.continues:
            return
        self._forget_timer(task.id)
        result = await task_result(self.service.storage, task.id)
        reports = await report_paths(workspace_of(self.service.settings, task.id))
        found = {"result": result, "report_paths": reports}
        error: str | None
        if task.id in self._timed_out:
            self._timed_out.discard(task.id)
            status, error = FAILED, outcome.reason
        elif outcome.state == "finished":
            exit_code = result.get("outputs", {}).get("exit_code", 0)
            status = COMPLETED if exit_code in (0, None) else FAILED
            error = None if status == COMPLETED else f"the command exited with {exit_code}"
        elif outcome.state == "stopped":
            status, error = CANCELLED, outcome.reason
        else:
            status, error = FAILED, outcome.reason or f"the agent ended in {outcome.state}"
        await self.ledger.change(
            task, status=status, reason=error or "its run finished", only_from=OPEN,
            finished=True, outcome={**found, "error": error},
        )  # fmt: skip

    def _time_out(self, task: TaskRecord) -> None:
        self._timers.pop(task.id, None)
        self._timed_out.add(task.id)
        reason = f"the task's timeout of {task.timeout_seconds:g} seconds was reached"
        work = asyncio.ensure_future(self.service.runs.stop(task.id, reason))
        self._tasks.add(work)
        work.add_done_callback(self._tasks.discard)

    def _forget_timer(self, task_id: str) -> None:
        timer = self._timers.pop(task_id, None)
        if timer is not None:
            timer.cancel()

    def close(self) -> None:
        for timer in self._timers.values():
            timer.cancel()
        self._timers.clear()


def task_conversation(body: CreateTask) -> CreateConversation:
    """The conversation a background task runs, from its type and parameters."""
    task_id = new_task_id()
    title = _title(body.description)
    if body.task_type == "shell":
        shell = _parameters(ShellParameters, body.parameters)
        return conversation_request(
            {"initial_user_msg": "parameters.command"},
            conversation_id=task_id, title=title, initial_user_msg=shell.command,
            agent="shell", priority=body.priority,
        )  # fmt: skip
    parameters = _parameters(ConversationParameters, body.parameters)
    return conversation_request(
        {name: f"parameters.{name}" for name in ("repository", "git_provider", "agent")}
        | {"selected_branch": "parameters.branch", "initial_user_msg": "parameters.message"},
        conversation_id=task_id, title=title,
        initial_user_msg=parameters.message or body.description,
        agent=parameters.agent, repository=parameters.repository,
        git_provider=parameters.git_provider, selected_branch=parameters.branch,
        max_iterations=parameters.max_iterations,
        max_budget_per_task=parameters.max_budget_per_task, priority=body.priority,
    )  # fmt: skip


Parameters = TypeVar("Parameters", ConversationParameters, ShellParameters)


def _parameters(model: type[Parameters], given: dict[str, object]) -> Parameters:
    try:
        return model.model_validate(given)
    except ValidationError as exc:
        error = validation_error(exc)
        raise BadRequest(
            f"parameters.{error.message}", field=f"parameters.{error.field}", code=error.code
        ) from None


def _title(description: str) -> str:
    first = description.strip().splitlines()[0] if description.strip() else "Task"
    return first[:60] + ("…" if len(first) > 60 else "")


def task_response(task: TaskRecord, queue_position: int | None = None) -> dict[str, object]:
    """A task as ``GET /api/tasks/{task_id}`` shows it (reference 003's TaskResponse)."""
    spec, outcome = task.spec, task.outcome
    return {
        "task_id": public_id(task.id),
        "kind": task.kind,
        "task_type": spec.get("task_type", "conversation"),
        "description": spec.get("description", ""),
        "parameters": spec.get("parameters", {}),
        "priority": task.priority,
        "timeout_seconds": task.timeout_seconds,
        "status": task.status,
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
        "started_at": task.started_at.isoformat() if task.started_at else None,
        "completed_at": task.finished_at.isoformat() if task.finished_at else None,
        "result": outcome.get("result"),
        "error": outcome.get("error"),
        "report_paths": outcome.get("report_paths", []),
        "conversation_id": public_id(task.id),
        "queue_position": queue_position,
        "url": f"/api/tasks/{public_id(task.id)}",
    }


__all__ = ["SINGLE", "TaskRuns", "new_task_id", "task_conversation", "task_response"]
