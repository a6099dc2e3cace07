"""`Automation`: tasks, schedules and webhooks, built once beside the conversation
service and driven by the run owner's hooks (it is a `RunListener`).

At startup, before runs are recovered: tasks a crash left open are failed ("the server
restarted ...") unless their conversation is still queued (then they wait and run as
before); then stored schedules are read (firings missed while down follow each
schedule's catch-up rule) and every webhook resumes from its cursor.

A task is created with its conversation, never added to one: whether a run's
conversation has a task (and of which kind) is read once per run, when it begins (not
at all for the run of a conversation just created without one), and the record is read
again only for conversations that have one (most runs have none; reading it at every
phase was ~10% of a run start's server time).
"""

from __future__ import annotations

import asyncio
import logging

from server.run_listeners import RunOutcome
from server.service import ConversationService
from server.settings import Settings
from server.shared_reads import shared_read
from server.tasks.background import TaskRuns
from server.tasks.control import SingleTasks
from server.tasks.cron import Clock, SystemClock
from server.tasks.ledger import TaskLedger
from server.tasks.models import BACKGROUND, FAILED, OPEN, SINGLE, START, START_OPEN
from server.tasks.scheduler import Scheduler
from server.tasks.schedules import Schedules
from server.tasks.starts import StartTasks
from server.tasks.webhooks import Webhooks
from storage import ConversationNotFound, TaskNotFound, TaskRecord

logger = logging.getLogger(__name__)


class Automation:
    def __init__(
        self, service: ConversationService, settings: Settings, clock: Clock | None = None
    ) -> None:
        self.service = service
        self.storage = service.storage
        self.webhooks = Webhooks(self.storage, settings)
        self.ledger = TaskLedger(self.storage, service, self.webhooks)
        self.tasks = TaskRuns(self.ledger)
        self.starts = StartTasks(self.ledger)
        self.single = SingleTasks(self.ledger, self.tasks)
        self.scheduler = Scheduler(service, self.webhooks, clock or SystemClock())
        self.schedules = Schedules(service, self.scheduler, self.webhooks, settings)
        self._run_tasks: dict[str, asyncio.Future[TaskRecord | None]] = {}
        """Per conversation whose run began here: its task, read as the run began."""
        service.runs.listeners.add(self)

    async def recover(self) -> None:
        """Before the run owner recovers: settle what a crash left open."""
        cursor = None
        while True:
            page = await self.storage.list_tasks(
                statuses=[*OPEN, *START_OPEN], limit=100, cursor=cursor
            )
            for task in page.tasks:
                await self._recover(task)
            if (cursor := page.next_cursor) is None:
                break
        await self.scheduler.load()

    async def start(self) -> None:
        """After the run owner recovered: fire what is due, deliver what is owed."""
        await self.webhooks.start()
        self.scheduler.start()

    async def close(self) -> None:
        """Before runs stop: no more firings. (Webhooks close after, see `close_webhooks`.)"""
        await self.scheduler.close()
        self.tasks.close()

    async def close_webhooks(self) -> None:
        await self.webhooks.close()

    async def _recover(self, task: TaskRecord) -> None:
        try:
            record = await self.storage.get_conversation(task.id)
        except ConversationNotFound:
            return
        if record.status == "QUEUED":
            return
        reason = "the server restarted before the task ended"
        if task.kind == START:
            await self.ledger.change(
                task, status="ERROR", reason=reason, detail=reason, only_from=START_OPEN,
                outcome={"error": reason},
            )  # fmt: skip
        else:
            await self.ledger.change(
                task, status=FAILED, reason=reason, only_from=OPEN, finished=True,
                outcome={"error": reason},
            )  # fmt: skip

    # -- RunListener -----------------------------------------------------------------

    def run_began(self, conversation_id: str, created: bool) -> None:
        if created:  # just created without one: a task is created with its conversation
            none: asyncio.Future[TaskRecord | None] = asyncio.get_running_loop().create_future()
            none.set_result(None)
            self._run_tasks[conversation_id] = none
            return
        # A failed read is answered by reading again (`_has_task`): no warning for it.
        read = shared_read(self._task(conversation_id))
        self._run_tasks[conversation_id] = read  # a later run's read replaces an earlier's

    async def run_launched(self, conversation_id: str) -> None:
        if await self._has_task(conversation_id, (BACKGROUND, SINGLE)):
            task = await self._task(conversation_id)
            if task is not None and task.kind in (BACKGROUND, SINGLE):
                await self.tasks.launched(task)

    async def run_phase(self, conversation_id: str, phase: str) -> None:
        if await self._has_task(conversation_id, (START,)):
            task = await self._task(conversation_id)  # its status moves with each phase
            if task is not None and task.kind == START:
                await self.starts.phase(task, phase)

    async def run_settled(self, conversation_id: str, outcome: RunOutcome) -> None:
        began = self._run_tasks.pop(conversation_id, None)
        if await self._has_task(conversation_id, None, began):
            task = await self._task(conversation_id)
            if task is not None:
                if task.kind == START:
                    await self.starts.settled(task, outcome)
                else:
                    await self.tasks.settled(task, outcome)
        await self.scheduler.run_settled(conversation_id, outcome)

    async def _has_task(
        self,
        conversation_id: str,
        kinds: tuple[str, ...] | None,
        began: asyncio.Future[TaskRecord | None] | None = None,
    ) -> bool:
        """Whether the conversation may have a task (of one of ``kinds``), from what was
        read as its run began; True when nothing was (a run taken over from a dead
        process) or that read failed."""
        read = began if began is not None else self._run_tasks.get(conversation_id)
        if read is None:
            return True
        try:
            task = await asyncio.shield(read)
        except Exception:
            return True
        return task is not None and (kinds is None or task.kind in kinds)

    async def _task(self, conversation_id: str) -> TaskRecord | None:
        try:
            return await self.storage.get_task(conversation_id)
        except TaskNotFound:
            return None
