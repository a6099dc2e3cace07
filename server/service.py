"""`ConversationService`: what the routes and streams ask of conversations.

It creates conversations, admits their runs through the `SessionManager`, and routes
user input: a user's event is logged first, then acted on (handed to the running agent,
or starting a run). Control requests (pause, resume, stop) are logged as
``change_agent_state`` actions naming who asked, then carried out.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Literal, cast

from events import (
    ActionBase,
    AgentState,
    AgentStateChangedObservation,
    ChangeAgentStateAction,
    CmdRunAction,
    EventBase,
    MessageAction,
    TaskItem,
    TaskTrackingAction,
    build_filter,
)
from events.actions import ChangeAgentStateArgs, MessageArgs
from events.observations import AgentStateChangedExtras
from server.agents import Agents, AgentUnavailable
from server.auth import User, scoped_id
from server.controller import ConversationRun, RunLimits, status_for
from server.errors import BadRequest, Conflict
from server.imports import recording_documents, recording_events
from server.runtimes import check_new_conversation, clone_url, destroy_sandbox, make_runtime
from server.schemas import CreateConversation
from server.sessions import Caps, SessionManager
from server.settings import Settings
from storage import (
    ConversationPatch,
    ConversationRecord,
    ConversationStatus,
    NewConversation,
    Storage,
    StoredEvent,
)
from storage.models import new_conversation_id

logger = logging.getLogger(__name__)

Control = Literal["pause", "resume", "stop"]


class ConversationService:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self._runs: dict[str, ConversationRun] = {}
        self.agents = Agents(settings)
        self.sessions = SessionManager(
            Caps(
                max_running=settings.max_running,
                max_running_per_user=settings.max_running_per_user,
                policy=settings.at_cap,  # type: ignore[arg-type]
                idle_close_delay=settings.idle_close_delay,
            ),
            launch=self._launch,
            stop=self.stop,
            queued=self._queued,
        )

    # -- lifecycle -------------------------------------------------------------------

    async def recover(self) -> None:
        """After a crash or restart nothing runs: say so in the logs of conversations
        that were running, and queue again those that were queued."""
        requeue: list[ConversationRecord] = []
        cursor = None
        while True:
            page = await self.storage.list_conversations(limit=100, cursor=cursor)
            for record in page.conversations:
                if record.status in ("RUNNING", "STARTING"):
                    await self.storage.update_conversation(
                        record.id, ConversationPatch(status="STOPPED", agent_state="stopped")
                    )
                    await self._log_state(
                        record.id, "stopped", "the server restarted", conversation_status="STOPPED"
                    )
                elif record.status == "QUEUED":
                    requeue.append(record)
            cursor = page.next_cursor
            if cursor is None:
                break
        for record in sorted(requeue, key=lambda r: r.created_at):
            async with self.sessions.admission() as admission:
                await admission.admit(record.id, record.owner, record.priority)
        self.sessions.start_idle_watch()

    async def shutdown(self) -> None:
        """Stop every run cleanly, recording why."""
        await self.sessions.close()
        runs = [run for run in self._runs.values() if not run.done]
        await asyncio.gather(
            *(run.stop("the server is shutting down") for run in runs), return_exceptions=True
        )
        await self.agents.close()

    # -- conversations ---------------------------------------------------------------

    async def create(self, request: CreateConversation, user: User) -> ConversationRecord:
        check_new_conversation(
            self.settings,
            keys_required=user.name is not None,
            repository=request.repository,
            git_provider=request.git_provider,
        )
        agent = request.agent or self.settings.agent
        try:
            self.agents.check(agent)
        except AgentUnavailable as exc:
            raise BadRequest(str(exc), field="agent") from None
        replay = (
            await asyncio.to_thread(_parse_replay, request.replay_json)
            if request.replay_json
            else []
        )
        settings: dict[str, Any] = {
            "agent": agent,
            "conversation_instructions": request.conversation_instructions,
            "mcp_config": request.mcp_config,
            "image_urls": request.image_urls or None,
        }
        new = NewConversation(
            owner=user.name,
            title=request.title or _title_from(request.initial_user_msg),
            repository=request.repository,
            selected_branch=request.selected_branch,
            git_provider=request.git_provider,
            trigger="gui",
            max_iterations=request.max_iterations or self.settings.max_iterations,
            max_budget=request.max_budget_per_task,
            priority=request.priority,
            settings={key: value for key, value in settings.items() if value is not None},
            id=scoped_id(user, request.conversation_id or new_conversation_id()),
        )
        if not request.initial_user_msg:
            if replay:  # the conversation and the recording: together or not at all
                record, _ = await self.storage.create_conversation_with_events(new, replay)
            else:
                record = await self.storage.create_conversation(new)
            return record
        async with self.sessions.admission() as admission:
            admission.check(user.name)  # a refusal writes nothing
            message = _user_message(request.initial_user_msg, request.image_urls)
            if replay:
                record, _ = await self.storage.create_conversation_with_events(
                    new, [*replay, message]
                )
            else:
                record = await self.storage.create_conversation(new)
                await self.storage.append(record.id, message)
            await admission.admit(record.id, record.owner, record.priority)
        return await self.storage.get_conversation(record.id)

    async def delete(self, conversation_id: str) -> None:
        self.sessions.forget(conversation_id)
        await self.stop(conversation_id, "the conversation was deleted")
        await destroy_sandbox(self.settings, conversation_id)  # its workspace, container
        await self.storage.delete_conversation(conversation_id)

    def live(self, record: ConversationRecord) -> dict[str, Any]:
        """What is true now and not yet in the record: control values, queue position."""
        run = self.run_of(record.id)
        values: dict[str, Any] = {
            "iteration": record.iterations,
            "max_iterations": record.max_iterations,
            "accumulated_cost": record.accumulated_cost,
            "max_budget_per_task": record.max_budget,
            "queue_position": self.sessions.queue_position(record.id),
        }
        if run is not None:
            values.update(run.control_values())
            values["agent_state"] = run.state
        return values

    async def plan(self, conversation_id: str) -> tuple[list[TaskItem], int | None]:
        """The last plan applied, and the id of the event that applied it."""
        end_id = None
        while True:
            page = await self.storage.search_events(
                conversation_id, end_id=end_id, reverse=True, limit=100,
                filter=_PLANS,
            )  # fmt: skip
            for stored in page.events:
                event = stored.to_event()
                if isinstance(event, TaskTrackingAction) and event.args.command == "plan":
                    return list(event.args.task_list), stored.id
            if page.next_cursor is None:
                return [], None
            end_id = page.next_cursor

    # -- runs ------------------------------------------------------------------------

    def run_of(self, conversation_id: str) -> ConversationRun | None:
        run = self._runs.get(conversation_id)
        return run if run is not None and not run.done else None

    async def start(self, conversation_id: str) -> int | None:
        """Admit a run of the conversation; returns its queue position when queued."""
        record = await self.storage.get_conversation(conversation_id)
        async with self.sessions.admission() as admission:
            if self.run_of(conversation_id) is not None:
                return None
            admission.check(record.owner)
            return await admission.admit(record.id, record.owner, record.priority)

    async def stop(self, conversation_id: str, reason: str = "stopped by the user") -> None:
        run = self.run_of(conversation_id)
        if run is not None:
            await run.stop(reason)

    async def control(self, conversation_id: str, command: Control, user: User, via: str) -> None:
        """Pause, resume or stop a conversation on behalf of ``user``; logged first."""
        if command == "pause" and self.run_of(conversation_id) is None:
            raise Conflict("the conversation is not running; there is nothing to pause")
        who = user.name or "the local user"
        await self.storage.append(conversation_id, _control_request(command, who, via))
        await self._carry_out(conversation_id, command, who)

    async def send_message(
        self, conversation_id: str, text: str, image_urls: list[str] | None = None
    ) -> StoredEvent:
        return await self.user_event(conversation_id, _user_message(text, image_urls))

    async def user_event(
        self, conversation_id: str, event: EventBase, user: User | None = None, via: str = "api"
    ) -> StoredEvent:
        """Log an event a user sent, then act on it."""
        if not isinstance(event, ActionBase):
            raise BadRequest("users send actions, not observations", field="observation")
        # What only the server may record: ids and times (the log's, and an import's
        # original ids), and the agent's metrics and tool calls (the budget flag trusts
        # the first, the LLM transcript is rebuilt from the second).
        event = event.model_copy(
            update={
                "source": "user",
                "id": None,
                "timestamp": None,
                "llm_metrics": None,
                "tool_call_metadata": None,
                "original_id": None,
                "original_cause": None,
            }
        )
        if isinstance(event, MessageAction):
            return await self._message(conversation_id, event)
        if isinstance(event, ChangeAgentStateAction):
            command = _CONTROLS.get(event.args.agent_state)
            if command is None:
                raise BadRequest(
                    "agent_state may be paused, running or stopped", field="args.agent_state"
                )
            who = (user.name if user else None) or "the local user"
            stored = await self.storage.append(conversation_id, _control_request(command, who, via))
            if command == "pause" and self.run_of(conversation_id) is None:
                return stored
            await self._carry_out(conversation_id, command, who)
            return stored
        stored = await self.storage.append(conversation_id, event)
        if isinstance(event, CmdRunAction) and (run := self.run_of(conversation_id)):
            run.run_user_action(event, stored)
        return stored

    async def _message(self, conversation_id: str, message: MessageAction) -> StoredEvent:
        run = self.run_of(conversation_id)
        if run is not None:
            stored = await self.storage.append(conversation_id, message)
            run.deliver(message.model_copy(update={"id": stored.id}))
            return stored
        record = await self.storage.get_conversation(conversation_id)
        async with self.sessions.admission() as admission:
            if (run := self.run_of(conversation_id)) is not None:
                stored = await self.storage.append(conversation_id, message)
                run.deliver(message.model_copy(update={"id": stored.id}))
                return stored
            admission.check(record.owner)  # a refusal writes nothing
            stored = await self.storage.append(conversation_id, message)
            await admission.admit(record.id, record.owner, record.priority)
            return stored

    async def _carry_out(self, conversation_id: str, command: Control, who: str) -> None:
        run = self.run_of(conversation_id)
        if command == "stop":
            if self.sessions.forget(conversation_id):  # it was waiting in the queue
                await self.storage.update_conversation(
                    conversation_id, ConversationPatch(status="STOPPED", agent_state="stopped")
                )
                await self._log_state(
                    conversation_id,
                    "stopped",
                    f"stopped by {who} while queued",
                    conversation_status="STOPPED",
                )
            await self.stop(conversation_id, f"stopped by {who}")
        elif command == "pause" and run is not None:
            await run.pause(f"paused by {who}")
        elif command == "resume":
            if run is None:
                await self.start(conversation_id)
            else:
                await run.resume(f"resumed by {who}")

    async def _launch(self, conversation_id: str) -> ConversationRun:
        """Called by the session manager, under its lock, when a run may start."""
        record = await self.storage.get_conversation(conversation_id)
        settings = self.settings
        run = ConversationRun(
            conversation_id,
            storage=self.storage,
            runtime=make_runtime(settings, conversation_id),
            agent=self.agents.make(
                record.settings.get("agent", settings.agent),
                record.settings.get("conversation_instructions"),
            ),
            limits=RunLimits(
                max_iterations=record.max_iterations,
                max_budget=record.max_budget,
                iterations=record.iterations,
                cost=record.accumulated_cost,
                hard_timeout=settings.hard_timeout,
                start_timeout=settings.sandbox_start_timeout,
                repository=clone_url(record.repository, record.git_provider),
                branch=record.selected_branch,
            ),
            on_state=self._on_state,
        )
        run.owner = record.owner
        self._runs[conversation_id] = run
        await self.storage.update_conversation(
            conversation_id, ConversationPatch(status="STARTING", agent_state="loading")
        )
        run.start()
        return run

    async def _on_state(
        self, run: ConversationRun, state: AgentState, reason: str, ended: bool
    ) -> None:
        values = run.control_values()
        await self.storage.update_conversation(
            run.conversation_id,
            ConversationPatch(
                status=cast(ConversationStatus, status_for(state, ended=ended)),
                agent_state=state,
                iterations=values["iteration"],
                max_iterations=values["max_iterations"],
                max_budget=values["max_budget_per_task"],
                accumulated_cost=values["accumulated_cost"],
                prompt_tokens=run.prompt_tokens,
                completion_tokens=run.completion_tokens,
            ),
        )
        if ended:
            if self._runs.get(run.conversation_id) is run:
                del self._runs[run.conversation_id]  # a long-lived server keeps no dead runs
            self.sessions.ended(run.conversation_id)

    async def _queued(self, conversation_id: str, position: int, total: int) -> None:
        record = await self.storage.update_conversation(
            conversation_id, ConversationPatch(status="QUEUED", agent_state="loading")
        )
        await self._log_state(
            conversation_id,
            "loading",
            f"queued: position {position} of {total}",
            queue_position=position,
            conversation_status="QUEUED",
            iteration=record.iterations,
            max_iterations=record.max_iterations,
            accumulated_cost=record.accumulated_cost,
            max_budget_per_task=record.max_budget,
        )

    async def _log_state(
        self, conversation_id: str, state: AgentState, reason: str, **extra: Any
    ) -> None:
        extras = AgentStateChangedExtras(agent_state=state, reason=reason, **extra)
        await self.storage.append(
            conversation_id, AgentStateChangedObservation(source="environment", extras=extras)
        )


_CONTROLS: dict[str, Control] = {"paused": "pause", "running": "resume", "stopped": "stop"}
_WANTED: dict[Control, AgentState] = {"pause": "paused", "resume": "running", "stop": "stopped"}


def _control_request(command: Control, who: str, via: str) -> ChangeAgentStateAction:
    """The audit record of a control request: what was asked, by whom, through what."""
    arguments = ChangeAgentStateArgs.model_validate(
        {
            "agent_state": _WANTED[command],
            "thought": f"{command} requested by {who} via {via}",
            "requested_by": who,
        }
    )
    return ChangeAgentStateAction(source="user", args=arguments)


def _user_message(text: str, image_urls: list[str] | None = None) -> MessageAction:
    return MessageAction(source="user", args=MessageArgs(content=text, image_urls=image_urls or []))


def _title_from(message: str | None) -> str:
    first_line = message.strip().splitlines()[0] if message and message.strip() else ""
    if not first_line:
        return "New conversation"
    return (first_line[:60] + "…") if len(first_line) > 60 else first_line


def _parse_replay(replay_json: str) -> list[EventBase]:
    """A recorded trajectory (see server/imports.py), kept as recorded and renumbered;
    copied into the new conversation, not re-run. CPU work: run off the event loop."""
    if not replay_json:
        return []
    documents = recording_documents(replay_json, lines=False, name="replay_json")
    return list(recording_events(documents, name="replay_json"))


_PLANS = build_filter(include_types=["action:task_tracking"])
