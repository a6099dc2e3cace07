"""`TaskLedger`: how every kind of task is opened and changed.

A task is opened with its conversation, the ``task_state`` "created" event and the
user's message in one transaction, under the session manager's admission lock (a
refusal — 429 at the cap with policy reject, 503 with a full queue — writes nothing),
then admitted: it runs, or waits in the one queue by its priority. Every later change
is one write of the task's record and a ``task_state`` event in its conversation's log.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from events import EventBase, MessageAction, TaskStateObservation
from events.actions import MessageArgs
from events.automation import TaskStateExtras
from server.auth import User, public_id
from server.errors import BadRequest
from server.http import validation_error
from server.schemas import CreateConversation
from server.service import ConversationService
from server.tasks.models import FINAL, START_FINAL, WebhookSpec
from server.tasks.webhooks import Webhooks
from storage import (
    ConversationRecord,
    NewTask,
    Storage,
    TaskNotFound,
    TaskPatch,
    TaskRecord,
    TaskStateConflict,
)

logger = logging.getLogger(__name__)
FINAL_WAIT_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Opened:
    task: TaskRecord
    conversation: ConversationRecord
    queue_position: int | None


def is_final(task: TaskRecord) -> bool:
    return task.status in FINAL or task.status in START_FINAL


class TaskLedger:
    def __init__(self, storage: Storage, service: ConversationService, webhooks: Webhooks) -> None:
        self.storage = storage
        self.service = service
        self.webhooks = webhooks
        self._finals: dict[str, asyncio.Event] = {}

    async def open(
        self,
        user: User,
        request: CreateConversation,
        task: NewTask,
        *,
        webhook: WebhookSpec | None,
        trigger: str,
    ) -> Opened:
        """Create the task and its conversation, then admit its run. Raises what
        admission raises (`TooManyRequests`, `ServiceUnavailable`) with nothing written,
        and `Forbidden` / `BadRequest` for what the server's settings refuse."""
        new = self.service.new_conversation(request, user, trigger=trigger)
        events: list[EventBase] = [state_event(new.id, task.kind, task.status, "created")]
        if request.initial_user_msg:
            arguments = MessageArgs(content=request.initial_user_msg)
            events.append(MessageAction(source="user", args=arguments))
        runs = self.service.runs
        async with runs.admission(new.id) as admission:
            admission.check(user.name)
            record, conversation, _ = await self.storage.create_task(task, new, events)
            if webhook is not None:
                await self.webhooks.attach(
                    conversation.id, user.name, f"task:{conversation.id}", webhook
                )
            position = await admission.admit(conversation.id, user.name, conversation.priority)
        return Opened(record, conversation, position)

    async def change(
        self,
        task: TaskRecord,
        *,
        status: str | None = None,
        reason: str = "",
        only_from: tuple[str, ...] | None = None,
        started: bool = False,
        finished: bool = False,
        outcome: dict[str, Any] | None = None,
        detail: str | None = None,
    ) -> TaskRecord | None:
        """Record a change (one write: the record and its event). ``outcome`` is merged
        into the task's. None when the task is gone or no longer in ``only_from``."""
        now = datetime.now(UTC)
        fields: dict[str, Any] = {}
        if status is not None:
            fields["status"] = status
        if detail is not None:
            fields["detail"] = detail
        merged = {**task.outcome, **(outcome or {})}
        if outcome:
            fields["outcome"] = merged
        if started:
            fields["started_at"] = now
        if finished:
            fields["finished_at"] = now
        new_status = status or task.status
        event = state_event(
            task.id, task.kind, new_status, reason,
            previous=task.status, result=merged.get("result"), error=merged.get("error"),
        )  # fmt: skip
        try:
            record, _ = await self.storage.update_task(
                task.id, TaskPatch(**fields), event, only_from=only_from
            )
        except (TaskNotFound, TaskStateConflict) as exc:
            logger.debug("task change not recorded: %s", exc)
            return None
        if is_final(record) and (waiting := self._finals.get(record.id)) is not None:
            waiting.set()
        return record

    async def wait_final(self, task_id: str) -> TaskRecord:
        """The task once final (or as it is after `FINAL_WAIT_SECONDS`)."""
        settled = self._finals.setdefault(task_id, asyncio.Event())
        try:
            task = await self.storage.get_task(task_id)
            if not is_final(task):
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(settled.wait(), FINAL_WAIT_SECONDS)
                task = await self.storage.get_task(task_id)
        finally:
            self._finals.pop(task_id, None)
        return task


def conversation_request(
    renamed: dict[str, str] | None = None, **fields: Any
) -> CreateConversation:
    """The conversation a task asks for; what only `CreateConversation` checks (the form
    of a repository, branch or provider) is a `BadRequest` naming the client's field
    (``renamed`` maps ours to theirs)."""
    try:
        return CreateConversation(**fields)
    except ValidationError as exc:
        error = validation_error(exc)
        field = (renamed or {}).get(error.field or "", error.field)
        problem = error.message.partition(": ")[2] or error.message
        raise BadRequest(f"{field}: {problem}", field=field, code=error.code) from None


def state_event(
    task_id: str,
    kind: str,
    status: str,
    reason: str,
    *,
    previous: str | None = None,
    result: Any = None,
    error: str | None = None,
) -> TaskStateObservation:
    extras = TaskStateExtras(
        task_id=public_id(task_id), kind=kind, status=status, previous_status=previous,
        reason=reason, result=result, error=error,
    )  # fmt: skip
    return TaskStateObservation(source="environment", extras=extras)
