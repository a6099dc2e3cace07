"""The controller: one `ConversationRun` per running conversation.

A run starts the runtime, drives its agent through the `AgentContext` it implements, and
logs every step: the action, then the observation it caused (``cause`` = the action's
id). Agent states are ``agent_state_changed`` events carrying the control values
(iterations, budget) so every subscriber sees them.

Before each action the run passes its gate: a pause holds it until resumed; a tripped
control flag moves it to ``error`` with the reason and holds it until a user message or
a resume raises the limit. Stopping cancels the agent wherever it waits; whatever runs in
the sandbox dies with the runtime. A hard timeout bounds the whole run, a start timeout
the sandbox's start.

The run owns its life. Each state change is one write: the ``agent_state_changed`` event
and the conversation record's fields, in one transaction. ``stop`` is idempotent: the
first caller cancels the agent once, and every caller waits until the sandbox is closed.
When the run ends, ``on_end`` is called exactly once, in a ``finally``, whatever failed:
the session slot is released then. The final state is written last, and retried while
the store refuses it (a full disk), so a run never stays "running" in the log once it
has ended; ``settled`` is set when it is durable (or the store has closed).
"""

from __future__ import annotations

import asyncio
import contextvars
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

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
)
from runtime import Runtime, RuntimeFailure
from server.agents.base import Agent, Usage
from server.flags import ControlFlag
from server.logs import CONVERSATION
from server.plans import track
from storage import (
    ConversationNotFound,
    ConversationPatch,
    ConversationStatus,
    Storage,
    StorageClosed,
    StorageError,
    StoredEvent,
)

logger = logging.getLogger(__name__)

Annotate = Callable[[ObservationBase], ObservationBase]
"""Given an action's observation before it is logged, returns what to log."""
EndListener = Callable[["ConversationRun"], None]
"""Called once when a run has ended (its sandbox closed), before its end is written."""
PhaseListener = Callable[["ConversationRun", str], Awaitable[None]]
"""Awaited at each phase of the start (the runtime's, STARTING_CONVERSATION, READY)."""
WAITING_STATES: frozenset[str] = frozenset({"awaiting_user_input", "paused", "error"})
SETTLE_RETRY_FIRST = 0.5
SETTLE_RETRY_MAX = 30.0


@dataclass(frozen=True, kw_only=True)
class RunLimits:
    """What bounds a run, and what it starts from."""

    max_iterations: int | None = None
    max_budget: float | None = None
    iterations: int = 0
    """Steps taken by earlier runs of the conversation (the flag counts all of them)."""
    cost: float = 0.0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    hard_timeout: float | None = None
    """Seconds the whole run may take."""
    start_timeout: float = 120.0
    """Seconds the sandbox may take to start."""
    repository: str | None = None
    """Cloned into the workspace when the sandbox starts."""
    branch: str | None = None
    currency: str = "USD"
    """What costs are counted in (``THREADLINE_LLM_CURRENCY``)."""


class ConversationRun:
    """Implements `AgentContext` for one run of one conversation."""

    def __init__(
        self,
        conversation_id: str,
        *,
        storage: Storage,
        runtime: Runtime,
        agent: Agent,
        limits: RunLimits,
        on_end: EndListener,
        on_phase: PhaseListener | None = None,
    ) -> None:
        self.conversation_id = conversation_id
        self.owner: str | None = None
        self.storage = storage
        self.runtime = runtime
        self.agent = agent
        self.limits = limits
        self.state: AgentState = "loading"
        self.iterations = ControlFlag.make("iteration", limits.iterations, limits.max_iterations)
        self.budget = ControlFlag.make("budget", limits.cost, limits.max_budget, limits.currency)
        self.prompt_tokens = limits.prompt_tokens
        self.completion_tokens = limits.completion_tokens
        self.last_activity = time.monotonic()
        self.final_reason = ""
        self.settled = asyncio.Event()
        """Set once the run's end is durable (or can no longer be written)."""
        self._on_end = on_end
        self._on_phase = on_phase
        self._halted = asyncio.Event()
        self._stopping = False
        self._inbox: list[MessageAction] = []
        self._message_arrived = asyncio.Event()
        self._history: list[EventBase] = []
        self._seen = -1
        """The newest event id the agent has read in the history."""
        self._plan: list[TaskItem] = []
        self._task: asyncio.Task[None] | None = None
        self._stop_reason = ""
        self._resumed = asyncio.Event()
        self._resumed.set()
        self._flag_cleared = asyncio.Event()
        self._awaiting_input = False
        self._side_tasks: set[asyncio.Task[None]] = set()
        self._settling: asyncio.Future[None] | None = None

    # -- lifecycle -------------------------------------------------------------------

    async def begin(self) -> None:
        """Record that the run starts (raises `StorageError`, e.g. a full disk: then
        nothing started), and start it."""
        await self._set_state("loading", "starting the sandbox")
        context = contextvars.copy_context()  # its logs name the conversation
        context.run(CONVERSATION.set, self.conversation_id)
        self._task = asyncio.create_task(
            self._main(), name=f"run-{self.conversation_id}", context=context
        )
        self._task.add_done_callback(self._never_ran)

    def _never_ran(self, task: asyncio.Task[None]) -> None:
        """A task cancelled before its first step never runs `_main`'s ``finally``: end
        the run here instead, so nothing waits on it forever."""
        if self._halted.is_set():
            return
        self.state, self.final_reason = "stopped", self._stop_reason or "stopped"
        self._halted.set()
        try:
            self._on_end(self)
        finally:
            self._settling = asyncio.ensure_future(self._settle("stopped", self.final_reason))

    @property
    def done(self) -> bool:
        """The run has ended: its sandbox is closed (its end may not be written yet)."""
        return self._halted.is_set()

    @property
    def active(self) -> bool:
        return self._task is not None and not self._halted.is_set()

    @property
    def idle(self) -> bool:
        """Waiting for a person (input, a resume, a raised limit)."""
        return self.state in WAITING_STATES

    @property
    def leftover_messages(self) -> list[MessageAction]:
        """User messages delivered that the agent never looked at."""
        return self._unread()

    async def stop(self, reason: str = "stopped by the user") -> None:
        """Cancel the agent and kill what runs in the sandbox; return once it is closed.
        Idempotent: later calls wait for the first one's work, they never cancel the
        cleanup it is doing."""
        if self._task is None or self._halted.is_set():
            return
        if not self._stopping:
            self._stopping = True
            self._stop_reason = reason
            self._task.cancel()
        await self._halted.wait()

    async def wait(self) -> None:
        await self._halted.wait()

    async def pause(self, reason: str) -> bool:
        """Hold the agent before its next action. False when already paused."""
        if not self._resumed.is_set():
            return False
        self._resumed.clear()
        await self._set_state("paused", reason)
        return True

    async def resume(self, reason: str) -> bool:
        """Release a pause, or raise a tripped limit. False when there was nothing to do."""
        if not self._resumed.is_set():
            self._resumed.set()
            await self._set_state(
                "awaiting_user_input" if self._awaiting_input else "running", reason
            )
            return True
        if self.state == "error" and not self._flag_cleared.is_set():
            self._flag_cleared.set()
            return True
        return False

    async def _main(self) -> None:
        final: AgentState = "finished"
        reason = ""
        try:
            try:
                async with asyncio.timeout(self.limits.start_timeout):
                    await self.runtime.start(
                        repository=self.limits.repository,
                        branch=self.limits.branch,
                        on_status=self._status,
                        on_phase=self._phase,
                    )
            except TimeoutError:
                raise RuntimeFailure(
                    f"the sandbox did not start within {self.limits.start_timeout:g} seconds"
                ) from None
            await self._phase("STARTING_CONVERSATION")
            await self._set_state("running")
            await self._phase("READY")
            try:
                async with asyncio.timeout(self.limits.hard_timeout):
                    await self.agent.run(self)
            except TimeoutError:
                final = "error"
                reason = f"the hard timeout of {self.limits.hard_timeout:g} seconds was reached"
            else:
                if self.state == "rejected":
                    final = "rejected"
        except asyncio.CancelledError:
            final, reason = "stopped", self._stop_reason or "stopped"
            task = asyncio.current_task()
            if task is not None:
                task.uncancel()  # handled: the cleanup below must run to its end
        except RuntimeFailure as exc:
            final, reason = "error", str(exc)
        except StorageError as exc:
            # The log refused a step (a full disk, a deleted conversation): the run ends.
            final, reason = "error", f"the run could not record its work: {exc}"
        except Exception as exc:
            logger.exception("agent %s failed in %s", self.agent.name, self.conversation_id)
            final, reason = "error", f"the agent failed: {type(exc).__name__}: {exc}"
        finally:
            await self._close_sandbox()
            self.state, self.final_reason = final, reason
            self._halted.set()
            try:
                self._on_end(self)
            except Exception:
                logger.exception("ending run %s", self.conversation_id)
            await self._settle(final, reason)

    async def _close_sandbox(self) -> None:
        for task in self._side_tasks:
            task.cancel()
        try:
            await self.runtime.close()
        except Exception:
            logger.exception("closing the sandbox of %s", self.conversation_id)

    async def _settle(self, final: AgentState, reason: str) -> None:
        """Write the run's end; while the store refuses it (a full disk), retry with
        backoff. Gives up only when the conversation or the store is gone (a restart
        records the stop)."""
        delay = SETTLE_RETRY_FIRST
        try:
            while True:
                try:
                    await self._set_state(final, reason, ended=True)
                    return
                except (StorageClosed, ConversationNotFound):
                    return
                except StorageError as exc:
                    logger.debug("retrying the end of %s: %s", self.conversation_id, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, SETTLE_RETRY_MAX)
        finally:
            self.settled.set()

    # -- AgentContext ----------------------------------------------------------------

    async def history(self) -> list[EventBase]:
        after = self._history[-1].id if self._history and self._history[-1].id is not None else -1
        self._history.extend(await self.history_from(after + 1))
        return list(self._history)

    async def history_from(self, start_id: int, *, unread: bool = False) -> list[EventBase]:
        events: list[EventBase] = []
        cursor: int | None = max(0, start_id)
        while cursor is not None:
            page = await self.storage.search_events(self.conversation_id, start_id=cursor)
            events.extend(event.to_event() for event in page.events)
            cursor = page.next_cursor
        if events and events[-1].id is not None and not unread:
            self._seen = max(self._seen, events[-1].id)
        return events

    async def act(
        self, action: ActionBase, *, annotate: Annotate | None = None
    ) -> ObservationBase | None:
        await self._gate()
        self.iterations.current += 1
        if action.llm_metrics is not None:
            usage = action.llm_metrics.accumulated_token_usage
            self.budget.current = action.llm_metrics.accumulated_cost
            self.prompt_tokens, self.completion_tokens = (
                usage.prompt_tokens,
                usage.completion_tokens,
            )
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
        if annotate is not None:
            observation = annotate(observation)
        stored_observation = await self._append(observation)
        return observation.model_copy(update={"id": stored_observation.id})

    async def checkpoint(self) -> None:
        await self._gate()

    def usage(self) -> Usage:
        """What the conversation has spent so far, as the server counts it."""
        return Usage(self.budget.current, self.prompt_tokens, self.completion_tokens)

    async def log(self, event: EventBase, *, settings: dict[str, Any] | None = None) -> None:
        patch = None if settings is None else ConversationPatch(settings=settings)
        self.last_activity = time.monotonic()
        await self.storage.append(self.conversation_id, event, patch=patch)

    async def say(self, text: str, *, wait_for_response: bool = False) -> None:
        arguments = MessageArgs(content=text, wait_for_response=wait_for_response)
        await self.act(MessageAction(source="agent", args=arguments))

    async def plan(self, tasks: list[TaskItem]) -> None:
        arguments = TaskTrackingArgs(command="plan", task_list=tasks)
        await self.act(TaskTrackingAction(source="agent", args=arguments))

    def take_user_messages(self) -> list[MessageAction]:
        messages = self._unread()
        self._inbox.clear()
        self._message_arrived.clear()
        return messages

    async def wait_for_user_message(self) -> MessageAction:
        while not self._unread():
            self._inbox.clear()
            self._message_arrived.clear()
            self._awaiting_input = True
            try:
                await self._set_state("awaiting_user_input")
                await self._message_arrived.wait()
            finally:
                self._awaiting_input = False
            if self._resumed.is_set():
                await self._set_state("running")
        message, *rest = self._unread()
        self._inbox[:] = rest
        if not rest:
            self._message_arrived.clear()
        return message

    # -- from the outside ------------------------------------------------------------

    def deliver(self, message: MessageAction) -> None:
        """A user message was logged: the agent sees it at its next look, and a tripped
        limit is raised."""
        self._inbox.append(message)
        self._message_arrived.set()
        if self.state == "error":
            self._flag_cleared.set()

    def run_user_action(self, action: ActionBase, stored: StoredEvent) -> None:
        """A user's own command (a terminal line): run it beside the agent."""
        task = asyncio.create_task(self._run_for_user(action, stored))
        self._side_tasks.add(task)
        task.add_done_callback(self._side_tasks.discard)

    @property
    def current_plan(self) -> list[TaskItem]:
        return list(self._plan)

    def control_values(self) -> dict[str, Any]:
        """What the flags say now; streamed with every state change."""
        return {
            "iteration": int(self.iterations.current),
            "max_iterations": None if self.iterations.limit is None else int(self.iterations.limit),
            "accumulated_cost": self.budget.current,
            "max_budget_per_task": self.budget.limit,
            "held_by": next((f.name for f in (self.iterations, self.budget) if f.tripped), None),
        }

    # -- internals -------------------------------------------------------------------

    async def _gate(self) -> None:
        while True:
            if not self._resumed.is_set():
                await self._resumed.wait()
                continue
            tripped = [flag for flag in (self.iterations, self.budget) if flag.tripped]
            if tripped:
                self._flag_cleared.clear()
                await self._set_state("error", tripped[0].reason())
                await self._flag_cleared.wait()
                for flag in tripped:
                    flag.raise_limit()
                await self._set_state("running", f"{tripped[0].name} limit raised; continuing")
                continue
            return

    def _unread(self) -> list[MessageAction]:
        """Delivered messages the agent has not already seen in the history."""
        return [m for m in self._inbox if m.id is None or m.id > self._seen]

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
        self._plan, observation = track(self._plan, action)
        return observation

    async def _status(self, message: str) -> None:
        await self._set_state("loading", message)

    async def _phase(self, phase: str) -> None:
        if self._on_phase is not None:
            await self._on_phase(self, phase)

    async def _set_state(self, state: AgentState, reason: str = "", *, ended: bool = False) -> None:
        """One write: the state event, and the record's fields, in one transaction."""
        status = status_for(state, ended=ended)
        values = self.control_values()
        extras = AgentStateChangedExtras.model_validate(
            {"agent_state": state, "reason": reason, "conversation_status": status, **values}
        )
        patch = ConversationPatch(
            status=cast(ConversationStatus, status),
            agent_state=state,
            iterations=values["iteration"],
            max_iterations=values["max_iterations"],
            max_budget=values["max_budget_per_task"],
            accumulated_cost=values["accumulated_cost"],
            prompt_tokens=self.prompt_tokens,
            completion_tokens=self.completion_tokens,
        )
        self.last_activity = time.monotonic()
        await self.storage.append(
            self.conversation_id,
            AgentStateChangedObservation(source="environment", extras=extras),
            patch=patch,
        )
        self.state = state

    async def _append(self, event: EventBase) -> StoredEvent:
        self.last_activity = time.monotonic()
        return await self.storage.append(self.conversation_id, event)


def status_for(state: AgentState, *, ended: bool) -> str:
    """The conversation status that goes with an agent state."""
    if state == "loading":
        return "STARTING"
    if ended:
        return "ERROR" if state == "error" else "STOPPED"
    return "RUNNING"
