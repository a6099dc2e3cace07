"""The controller: one `ConversationRun` per running conversation.

A run starts the runtime, drives its agent through the `AgentContext` it implements, and
logs every step: the action, then the observation it caused (``cause`` = the action's
id). Agent states are `agent_state_changed` events. Stopping cancels the agent wherever
it waits; whatever it was running in the sandbox is killed with the runtime.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from events import (
    ActionBase,
    AgentFinishAction,
    AgentRejectAction,
    AgentState,
    AgentStateChangedObservation,
    AgentThinkAction,
    AgentThinkObservation,
    CmdRunAction,
    EventBase,
    FileEditAction,
    FileReadAction,
    FileWriteAction,
    MessageAction,
    ObservationBase,
    TaskItem,
    TaskTrackingAction,
    TaskTrackingObservation,
)
from events.actions import MessageArgs, TaskTrackingArgs
from events.observations import (
    AgentStateChangedExtras,
    ErrorExtras,
    ErrorObservation,
    TaskTrackingExtras,
)
from runtime import Runtime, RuntimeFailure
from server.agents.base import Agent
from storage import Storage, StoredEvent

logger = logging.getLogger(__name__)

RUNTIME_ACTIONS = (CmdRunAction, FileReadAction, FileWriteAction, FileEditAction)
StateListener = Callable[[str, AgentState, str], Awaitable[None]]


class ConversationRun:
    """Implements `AgentContext` for one run of one conversation."""

    def __init__(
        self,
        conversation_id: str,
        *,
        storage: Storage,
        runtime: Runtime,
        agent: Agent,
        on_state: StateListener,
    ) -> None:
        self.conversation_id = conversation_id
        self.storage = storage
        self.runtime = runtime
        self.agent = agent
        self.state: AgentState = "loading"
        self._on_state = on_state
        self._inbox: list[MessageAction] = []
        self._message_arrived = asyncio.Event()
        self._history: list[EventBase] = []
        self._plan: list[TaskItem] = []
        self._task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._side_tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.create_task(self._main(), name=f"run-{self.conversation_id}")

    @property
    def done(self) -> bool:
        return self._task is not None and self._task.done()

    async def stop(self, reason: str = "stopped by the user") -> None:
        """Cancel the agent, kill what runs in the sandbox, record ``stopped``."""
        if self._task is None or self._task.done():
            return
        self._stop_reason = reason
        self._task.cancel()
        await asyncio.shield(self._task)

    async def wait(self) -> None:
        if self._task is not None:
            await asyncio.shield(self._task)

    async def _main(self) -> None:
        final: AgentState = "finished"
        reason = ""
        try:
            await self._set_state("loading", "starting the runtime")
            await self.runtime.start(on_status=self._status)
            await self._set_state("running")
            await self.agent.run(self)
            if self.state == "rejected":
                final = "rejected"
        except asyncio.CancelledError:
            final, reason = "stopped", self._stop_reason or "stopped"
        except RuntimeFailure as exc:
            final, reason = "error", f"runtime failed: {exc}"
        except Exception as exc:
            logger.exception("agent %s failed in %s", self.agent.name, self.conversation_id)
            final, reason = "error", f"{type(exc).__name__}: {exc}"
        finally:
            for task in self._side_tasks:
                task.cancel()
            try:
                await self.runtime.close()
            finally:
                await self._set_state(final, reason)

    # -- AgentContext ----------------------------------------------------------------

    async def history(self) -> list[EventBase]:
        after = self._history[-1].id if self._history else -1
        while True:
            page = await self.storage.search_events(self.conversation_id, start_id=after + 1)
            self._history.extend(event.to_event() for event in page.events)
            if page.next_cursor is None:
                return list(self._history)
            after = page.next_cursor - 1

    async def act(self, action: ActionBase) -> ObservationBase | None:
        stored = await self._append(action)
        observation = await self._execute(action)
        if observation is None:
            return None
        observation = observation.model_copy(
            update={
                "cause": stored.id,
                "source": action.source or "agent",
                "tool_call_metadata": action.tool_call_metadata,
            }
        )
        stored_observation = await self._append(observation)
        return observation.model_copy(update={"id": stored_observation.id})

    async def say(self, text: str, *, wait_for_response: bool = False) -> None:
        await self.act(
            MessageAction(
                source="agent", args=MessageArgs(content=text, wait_for_response=wait_for_response)
            )
        )

    async def plan(self, tasks: list[TaskItem]) -> None:
        await self.act(
            TaskTrackingAction(
                source="agent", args=TaskTrackingArgs(command="plan", task_list=tasks)
            )
        )

    def take_user_messages(self) -> list[MessageAction]:
        messages = self._unread()
        self._inbox.clear()
        self._message_arrived.clear()
        return messages

    async def wait_for_user_message(self) -> MessageAction:
        while not self._unread():
            self._inbox.clear()
            self._message_arrived.clear()
            await self._set_state("awaiting_user_input")
            await self._message_arrived.wait()
            await self._set_state("running")
        message, *rest = self._unread()
        self._inbox[:] = rest
        if not rest:
            self._message_arrived.clear()
        return message

    def _unread(self) -> list[MessageAction]:
        """Delivered messages the agent has not already seen in `history()`."""
        seen = self._history[-1].id if self._history else -1
        return [m for m in self._inbox if m.id is None or seen is None or m.id > seen]

    # -- from the outside ------------------------------------------------------------

    def deliver(self, message: MessageAction) -> None:
        """A user message was logged; the agent sees it at its next look."""
        self._inbox.append(message)
        self._message_arrived.set()

    def run_user_action(self, action: ActionBase, stored: StoredEvent) -> None:
        """A user's own command (a terminal line): run it beside the agent."""
        task = asyncio.create_task(self._run_for_user(action, stored))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    @property
    def current_plan(self) -> list[TaskItem]:
        return list(self._plan)

    # -- internals -------------------------------------------------------------------

    async def _run_for_user(self, action: ActionBase, stored: StoredEvent) -> None:
        observation = await self.runtime.run(action)
        await self._append(observation.model_copy(update={"cause": stored.id, "source": "user"}))

    async def _execute(self, action: ActionBase) -> ObservationBase | None:
        match action:
            case CmdRunAction() | FileReadAction() | FileWriteAction() | FileEditAction():
                return await self.runtime.run(action)
            case TaskTrackingAction():
                return self._track(action)
            case AgentThinkAction():
                return AgentThinkObservation(content="Your thought has been logged.")
            case AgentRejectAction():
                self.state = "rejected"
                return None
            case MessageAction() | AgentFinishAction():
                return None
        return ErrorObservation(
            content=f"this server cannot carry out {action.kind} actions",
            extras=ErrorExtras(error_id="UNSUPPORTED_ACTION"),
        )

    def _track(self, action: TaskTrackingAction) -> TaskTrackingObservation:
        if action.args.command == "plan":
            self._plan = list(action.args.task_list)
            content = f"Task list has been updated with {len(self._plan)} items."
            return TaskTrackingObservation(
                content=content,
                extras=TaskTrackingExtras(command="plan", task_list=self._plan),
            )
        lines = [
            f"- [{'x' if t.status == 'done' else ' '}] {t.title} ({t.status})" for t in self._plan
        ]
        content = (
            "\n".join(lines)
            if lines
            else 'No task list found. Use the "plan" command to create one.'
        )
        return TaskTrackingObservation(content=content, extras=TaskTrackingExtras(command="view"))

    async def _status(self, message: str) -> None:
        await self._set_state("loading", message)

    async def _set_state(self, state: AgentState, reason: str = "") -> None:
        self.state = state
        await self._append(
            AgentStateChangedObservation(
                source="environment",
                extras=AgentStateChangedExtras(agent_state=state, reason=reason),
            )
        )
        await self._on_state(self.conversation_id, state, reason)

    async def _append(self, event: EventBase) -> StoredEvent:
        return await self.storage.append(self.conversation_id, event)


def _box(status: str) -> str:
    return "x" if status == "done" else " "
