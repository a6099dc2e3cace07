"""`ConversationService`: what the routes and streams ask of conversations.

It creates conversations and routes user input: a user's event is logged first, then
acted on (handed to the running agent, or starting a run). Control requests (pause,
resume, stop) are logged as ``change_agent_state`` actions naming who asked, then
carried out. Runs themselves — admission, launch, stop, their end — belong to the
`RunOwner` (server/runs.py).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from events import (
    ActionBase,
    ChangeAgentStateAction,
    CmdRunAction,
    EventBase,
    MessageAction,
    TaskItem,
    TaskTrackingAction,
    build_filter,
)
from events.actions import MessageArgs
from server.agents import Agents, AgentUnavailable
from server.auth import User, scoped_id
from server.cluster import ClusterSessions
from server.controller import ConversationRun
from server.errors import BadRequest, Conflict
from server.imports import recording_documents, recording_events, title_of
from server.known import KnownConversations
from server.replays import import_and_replay
from server.run_inputs import CONTROLS, Control, control_request
from server.runs import RunOwner
from server.runtimes import check_new_conversation, destroy_sandbox
from server.schemas import CreateConversation
from server.sessions import Admission, SessionManager
from server.settings import Settings
from storage import ConversationRecord, NewConversation, Storage, StorageFull, StoredEvent
from storage.models import new_conversation_id

logger = logging.getLogger(__name__)


class ConversationService:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self.agents = Agents(settings)
        self.runs = RunOwner(storage, settings, self.agents)
        self.known = KnownConversations()
        """Conversations a user's event may be posted to without reading the record."""

    @property
    def sessions(self) -> SessionManager | ClusterSessions:
        return self.runs.sessions

    # -- lifecycle -------------------------------------------------------------------

    async def recover(self) -> None:
        await self.runs.recover()

    async def shutdown(self) -> None:
        """Admit nothing more and stop every run cleanly, recording why."""
        await self.runs.shutdown()

    # -- conversations ---------------------------------------------------------------

    def new_conversation(
        self, request: CreateConversation, user: User, *, trigger: str = "gui"
    ) -> NewConversation:
        """What ``request`` creates for ``user``, checked against the server's settings
        (the local runtime, repositories, agents): `Forbidden`, `BadRequest` naming the
        field, or `ServiceUnavailable` while shutting down. Nothing is written."""
        self.runs.refuse_when_closing()
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
        settings: dict[str, Any] = {
            "agent": agent,
            "conversation_instructions": request.conversation_instructions,
            "mcp_config": request.mcp_config,
            "image_urls": request.image_urls or None,
        }
        return NewConversation(
            owner=user.name,
            title=request.title or _title_from(request.initial_user_msg),
            repository=request.repository,
            selected_branch=request.selected_branch,
            git_provider=request.git_provider,
            trigger=trigger,
            max_iterations=request.max_iterations or self.settings.max_iterations,
            max_budget=request.max_budget_per_task,
            priority=request.priority,
            settings={key: value for key, value in settings.items() if value is not None},
            id=scoped_id(user, request.conversation_id or new_conversation_id()),
        )

    async def create(self, request: CreateConversation, user: User) -> ConversationRecord:
        new = self.new_conversation(request, user)
        if request.replay_json and request.replay_mode != "view":
            return await self._replay(request, user)
        if request.replay_mode is not None and not request.replay_json:
            raise BadRequest("replay_mode goes with replay_json", field="replay_mode")
        replay = (
            await asyncio.to_thread(_parse_replay, request.replay_json)
            if request.replay_json
            else []
        )
        if not request.initial_user_msg:
            if replay:  # the conversation and the recording: together or not at all
                record, _ = await self.storage.create_conversation_with_events(new, replay)
            else:
                record = await self.storage.create_conversation(new)
            return record
        message = _user_message(request.initial_user_msg, request.image_urls)
        # One write: a conversation never exists without the message it was made for.
        events = [*replay, message]
        async with self.runs.admission(new.id) as admission:
            admission.check(user.name)  # a refusal writes nothing
            reservation = (
                admission.reserve(new.id, new.owner) if isinstance(admission, Admission) else None
            )
            if reservation is None:  # no free place: queue or evict, decided under the lock
                record, _ = await self.storage.create_conversation_with_events(new, events)
                await admission.admit(record.id, record.owner, record.priority)
        if reservation is None:
            return await self.storage.get_conversation(record.id)  # queued, or running
        # Its place is taken: written and launched without holding the lock, from the
        # record just written (not read back).
        try:
            record, _ = await self.storage.create_conversation_with_events(new, events)
        except BaseException:
            reservation.cancel()
            raise
        await reservation.launch(record)
        self.known.remember(record)
        return self.runs.as_launched(record)

    async def _replay(self, request: CreateConversation, user: User) -> ConversationRecord:
        """``replay_json`` to be executed again or re-run (`server.replays`)."""
        if request.initial_user_msg:
            raise BadRequest(
                "a replay starts from its recording: send further messages once it has "
                "finished (or use replay_mode view)",
                field="initial_user_msg",
            )
        documents = await asyncio.to_thread(
            recording_documents, request.replay_json or "", lines=False, name="replay_json"
        )
        replay, _ = await import_and_replay(
            self, user, documents, request.replay_mode or "execute",
            name="replay_json", title=request.title or title_of(documents),
            conversation_id=request.conversation_id, agent=request.agent,
            priority=request.priority, max_iterations=request.max_iterations,
            max_budget=request.max_budget_per_task,
        )  # fmt: skip
        return replay

    async def delete(self, conversation_id: str) -> None:
        """Stop the conversation's run, destroy its sandbox, delete it and its events."""

        async def remove() -> None:
            await destroy_sandbox(self.settings, conversation_id)  # workspace, container
            await self.storage.delete_conversation(conversation_id)
            self.known.forget(conversation_id)

        await self.runs.delete(conversation_id, remove)

    def live(self, record: ConversationRecord) -> dict[str, Any]:
        """What is true now and not yet in the record: control values, queue position."""
        return self.runs.live(record)

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
        return self.runs.run_of(conversation_id)

    async def start(self, conversation_id: str) -> int | None:
        """Admit a run of the conversation; returns its queue position when queued."""
        return await self.runs.start(await self.storage.get_conversation(conversation_id))

    async def stop(self, conversation_id: str, reason: str = "stopped by the user") -> None:
        await self.runs.stop(conversation_id, reason)

    async def control(self, conversation_id: str, command: Control, user: User, via: str) -> None:
        """Pause, resume or stop a conversation on behalf of ``user``; logged first."""
        self.runs.refuse_when_closing()
        who = user.name or "the local user"
        if self.runs.clustered:
            await self._control_in_cluster(conversation_id, command, who, via)
            return
        if command == "pause" and self.run_of(conversation_id) is None:
            raise Conflict("the conversation is not running; there is nothing to pause")
        try:
            await self.storage.append(conversation_id, control_request(command, who, via))
        except StorageFull:
            if command != "stop":
                raise
            # A stop goes ahead on a full disk: the run's end, written once space
            # returns, names who stopped it.
        await self._carry_out(conversation_id, command, who)

    async def send_message(
        self, conversation_id: str, text: str, image_urls: list[str] | None = None
    ) -> StoredEvent:
        return await self.user_event(conversation_id, _user_message(text, image_urls))

    async def user_event(
        self, conversation_id: str, event: EventBase, user: User | None = None, via: str = "api"
    ) -> StoredEvent:
        """Log an event a user sent, then act on it. Refused (503) while shutting down:
        nothing a user sends then could be acted on."""
        self.runs.refuse_when_closing()
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
            command = CONTROLS.get(event.args.agent_state)
            if command is None:
                raise BadRequest(
                    "agent_state may be paused, running or stopped", field="args.agent_state"
                )
            who = (user.name if user else None) or "the local user"
            if self.runs.clustered:
                return await self._control_in_cluster(conversation_id, command, who, via)
            try:
                stored = await self.storage.append(
                    conversation_id, control_request(command, who, via)
                )
            except StorageFull:
                if command == "stop":  # as in `control`: carried out, then the 507
                    await self._carry_out(conversation_id, command, who)
                raise
            if command == "pause" and self.run_of(conversation_id) is None:
                return stored
            await self._carry_out(conversation_id, command, who)
            return stored
        stored = await self.storage.append(conversation_id, event)
        if isinstance(event, CmdRunAction) and (run := self.run_of(conversation_id)):
            run.run_user_action(event, stored)
        return stored

    async def _message(self, conversation_id: str, message: MessageAction) -> StoredEvent:
        if self.runs.clustered:
            return await self._message_in_cluster(conversation_id, message)
        run = self.run_of(conversation_id)
        if run is not None:
            stored = await self.storage.append(conversation_id, message)
            if run.active:
                run.deliver(message.model_copy(update={"id": stored.id}))
            else:  # it ended while the message was written: the message starts the next
                await self.start(conversation_id)
            return stored
        record = await self.storage.get_conversation(conversation_id)
        async with self.runs.admission(conversation_id) as admission:
            if (run := self.run_of(conversation_id)) is not None:
                stored = await self.storage.append(conversation_id, message)
                run.deliver(message.model_copy(update={"id": stored.id}))
                return stored
            admission.check(record.owner)  # a refusal writes nothing
            stored = await self.storage.append(conversation_id, message)
            await admission.admit(record.id, record.owner, record.priority)
            return stored

    async def _message_in_cluster(
        self, conversation_id: str, message: MessageAction
    ) -> StoredEvent:
        """Logged under the cluster lock: a run (on any process) or a queued place takes
        it from the log (`server.run_inputs`); else it starts a run here."""
        record = await self.storage.get_conversation(conversation_id)
        async with self.runs.admission(conversation_id) as admission:
            if admission.row(conversation_id) is not None:
                return await self.storage.append(conversation_id, message)
            admission.check(record.owner)  # a refusal writes nothing
            stored = await self.storage.append(conversation_id, message)
            await admission.admit(record.id, record.owner, record.priority)
            return stored

    async def _control_in_cluster(
        self, conversation_id: str, command: Control, who: str, via: str
    ) -> StoredEvent:
        """Logged under the cluster lock. A running conversation's process carries the
        request out from its log; a queued or idle one is handled here."""
        record = await self.storage.get_conversation(conversation_id)
        async with self.runs.admission(conversation_id) as admission:
            row = admission.row(conversation_id)
            running = row is not None and row.state == "running"
            if command == "pause" and not running:
                raise Conflict("the conversation is not running; there is nothing to pause")
            if command == "resume" and row is None:
                admission.check(record.owner)  # a refusal writes nothing
            stored = await self.storage.append(conversation_id, control_request(command, who, via))
            if running:
                return stored
            if command == "stop" and await admission.forget(conversation_id):
                await self.runs.record_state(
                    conversation_id, "stopped", f"stopped by {who} while queued", "STOPPED"
                )
            elif command == "resume" and row is None:
                await admission.admit(record.id, record.owner, record.priority)
            return stored

    async def _carry_out(self, conversation_id: str, command: Control, who: str) -> None:
        run = self.run_of(conversation_id)
        if command == "stop":
            if await self.sessions.forget(conversation_id):  # it was waiting in the queue
                await self.runs.record_state(
                    conversation_id, "stopped", f"stopped by {who} while queued", "STOPPED"
                )
            await self.stop(conversation_id, f"stopped by {who}")
        elif command == "pause" and run is not None:
            await run.pause(f"paused by {who}")
        elif command == "resume":
            if run is None:
                await self.start(conversation_id)
            else:
                await run.resume(f"resumed by {who}")


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
