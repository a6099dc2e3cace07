"""Start tasks (reference 000, OpenHands' app-conversations): a conversation whose start
is followed phase by phase.

``POST /api/v1/app-conversations`` answers at once with the task in ``WORKING``; as the
run starts its status walks the runtime's real phases (announced by the runtime through
the run owner's hooks), each one a ``task_state`` event in the conversation's log:

    WORKING -> WAITING_FOR_SANDBOX (the queue, the workspace, a stale container removed)
    -> PREPARING_REPOSITORY (clone on the host, sandbox boot, checkout)
    -> RUNNING_SETUP_SCRIPT -> SETTING_UP_GIT_HOOKS -> STARTING_CONVERSATION -> READY

A run that ends before READY leaves the task in ERROR with the reason in ``detail``.
"""

from __future__ import annotations

import secrets
from typing import Any

from server.auth import User, public_id
from server.run_listeners import RunOutcome
from server.tasks.ledger import Opened, TaskLedger, conversation_request
from server.tasks.models import START, START_OPEN, START_PHASES, StartConversation
from storage import NewTask, TaskRecord


class StartTasks:
    def __init__(self, ledger: TaskLedger) -> None:
        self.ledger = ledger

    async def create(self, user: User, body: StartConversation) -> Opened:
        text = body.initial_message.text() if body.initial_message else None
        request = conversation_request(
            _START_FIELDS, conversation_id=secrets.token_hex(16), title=body.title,
            initial_user_msg=text or None, repository=body.selected_repository,
            git_provider=body.git_provider, selected_branch=body.selected_branch,
            agent=body.agent, max_iterations=body.max_iterations,
            max_budget_per_task=body.max_budget_per_task, priority=body.priority,
        )  # fmt: skip
        task = NewTask(
            kind=START, status="WORKING", priority=body.priority,
            spec={"request": body.model_dump(mode="json", exclude={"processors"})},
        )  # fmt: skip
        webhook = body.processors[0].webhook() if body.processors else None
        # Started even with nothing to say: the sandbox is made ready either way.
        return await self.ledger.open(
            user, request, task, webhook=webhook, trigger=body.trigger or "openhands_api"
        )

    async def phase(self, task: TaskRecord, phase: str) -> None:
        if task.status not in START_OPEN or phase not in START_PHASES:
            return
        if START_PHASES.index(phase) <= START_PHASES.index(task.status):
            return
        outcome: dict[str, Any] = {}
        if phase == "READY":
            outcome = {"sandbox_id": public_id(task.id), "app_conversation_id": public_id(task.id)}
        await self.ledger.change(
            task, status=phase, reason=_PHASE_REASONS[phase], detail="",
            only_from=(task.status,), outcome=outcome,
        )  # fmt: skip

    async def settled(self, task: TaskRecord, outcome: RunOutcome) -> None:
        if task.status not in START_OPEN:
            return
        detail = f"the run ended before it was ready ({outcome.state}): {outcome.reason}"
        await self.ledger.change(
            task, status="ERROR", reason=detail, detail=detail, only_from=START_OPEN,
            outcome={"error": detail},
        )  # fmt: skip


_START_FIELDS = {"repository": "selected_repository", "initial_user_msg": "initial_message"}
_PHASE_REASONS = {
    "WAITING_FOR_SANDBOX": "claiming the workspace",
    "PREPARING_REPOSITORY": "cloning, booting the sandbox, checking out",
    "RUNNING_SETUP_SCRIPT": "the repository's setup script, if any",
    "SETTING_UP_GIT_HOOKS": "the repository's pre-commit hook, if any",
    "STARTING_CONVERSATION": "starting the agent",
    "READY": "the conversation is running",
}


def start_task_response(task: TaskRecord, base_url: str) -> dict[str, Any]:
    """A start task as OpenHands' AppConversationStartTask."""
    ready = task.status == "READY"
    conversation = public_id(task.id)
    return {
        "id": conversation,
        "created_by_user_id": task.owner,
        "status": task.status,
        "detail": task.detail or None,
        "app_conversation_id": conversation if ready else None,
        "sandbox_id": task.outcome.get("sandbox_id") if ready else None,
        "agent_server_url": f"{base_url.rstrip('/')}/api/conversations/{conversation}"
        if ready
        else None,
        "request": task.spec.get("request", {}),
        "created_at": task.created_at.isoformat(),
        "updated_at": task.updated_at.isoformat(),
    }
