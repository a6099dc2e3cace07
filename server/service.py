"""`ConversationService`: what the routes and streams ask of conversations.

It creates conversations, starts and stops their runs, and routes user input: a user's
event is logged first, then handed to the running agent (or starts a run). This is the
seam the session manager (admission, caps, idle close) wraps.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import orjson

from events import (
    ActionBase,
    AgentState,
    AgentStateChangedObservation,
    ChangeAgentStateAction,
    CmdRunAction,
    EventBase,
    EventValidationError,
    MessageAction,
    parse_event,
)
from events.actions import MessageArgs
from events.observations import AgentStateChangedExtras
from runtime import CommandLimits, LocalRuntime
from server.agents import AGENTS, make_agent
from server.auth import User
from server.controller import ConversationRun
from server.errors import BadRequest
from server.schemas import CreateConversation
from server.settings import Settings
from storage import (
    ConversationPatch,
    ConversationRecord,
    ConversationStatus,
    NewConversation,
    Storage,
    StoredEvent,
)

logger = logging.getLogger(__name__)


def status_for(state: AgentState) -> ConversationStatus:
    """The conversation status that goes with an agent state."""
    match state:
        case "loading":
            return "STARTING"
        case "error":
            return "ERROR"
        case "finished" | "stopped" | "rejected":
            return "STOPPED"
    return "RUNNING"


class ConversationService:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self._runs: dict[str, ConversationRun] = {}
        self._lock = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------

    async def recover(self) -> None:
        """After a crash or restart, no conversation is running: say so in their logs."""
        cursor = None
        while True:
            page = await self.storage.list_conversations(limit=100, cursor=cursor)
            for record in page.conversations:
                if record.status in ("RUNNING", "STARTING"):
                    await self._record_end(record.id, "stopped", "the server restarted")
            cursor = page.next_cursor
            if cursor is None:
                return

    async def shutdown(self) -> None:
        """Stop every run cleanly, recording why."""
        runs = list(self._runs.values())
        await asyncio.gather(
            *(run.stop("the server is shutting down") for run in runs), return_exceptions=True
        )

    # -- conversations ---------------------------------------------------------------

    async def create(self, request: CreateConversation, user: User) -> ConversationRecord:
        agent = request.agent or self.settings.agent
        if agent not in AGENTS:
            raise BadRequest(
                f"unknown agent {agent!r}; known: {', '.join(sorted(AGENTS))}", field="agent"
            )
        replay = _parse_replay(request.replay_json) if request.replay_json else []
        settings: dict[str, Any] = {
            "agent": agent,
            "max_iterations": request.max_iterations or self.settings.max_iterations,
            "max_budget_per_task": request.max_budget_per_task,
            "conversation_instructions": request.conversation_instructions,
            "mcp_config": request.mcp_config,
            "image_urls": request.image_urls,
        }
        new = NewConversation(
            owner=user.name,
            title=request.title or _title_from(request.initial_user_msg),
            repository=request.repository,
            selected_branch=request.selected_branch,
            git_provider=request.git_provider,
            trigger="gui",
            settings={key: value for key, value in settings.items() if value is not None},
            **({"id": request.conversation_id} if request.conversation_id else {}),
        )
        record = await self.storage.create_conversation(new)
        if replay:
            await self.storage.append_many(record.id, replay)
        if request.initial_user_msg:
            await self.send_message(record.id, request.initial_user_msg, request.image_urls)
            record = await self.storage.get_conversation(record.id)
        return record

    async def delete(self, conversation_id: str) -> None:
        await self.stop(conversation_id)
        await self.storage.delete_conversation(conversation_id)

    # -- runs ------------------------------------------------------------------------

    def run_of(self, conversation_id: str) -> ConversationRun | None:
        run = self._runs.get(conversation_id)
        return run if run is not None and not run.done else None

    async def start(self, conversation_id: str) -> ConversationRun:
        async with self._lock:
            run = self.run_of(conversation_id)
            if run is not None:
                return run
            record = await self.storage.get_conversation(conversation_id)
            agent = make_agent(record.settings.get("agent", self.settings.agent), self.settings)
            runtime = LocalRuntime(
                self.settings.workspaces / conversation_id,
                CommandLimits(
                    timeout=self.settings.command_timeout, output_limit=self.settings.output_limit
                ),
            )
            await self.storage.update_conversation(
                conversation_id, ConversationPatch(status="STARTING", agent_state="loading")
            )
            run = ConversationRun(
                conversation_id,
                storage=self.storage,
                runtime=runtime,
                agent=agent,
                on_state=self._on_state,
            )
            self._runs[conversation_id] = run
            run.start()
            return run

    async def stop(self, conversation_id: str) -> None:
        run = self._runs.get(conversation_id)
        if run is not None:
            await run.stop()

    async def send_message(
        self, conversation_id: str, text: str, image_urls: list[str] | None = None
    ) -> StoredEvent:
        message = MessageAction(
            source="user", args=MessageArgs(content=text, image_urls=image_urls or [])
        )
        return await self.user_event(conversation_id, message)

    async def user_event(self, conversation_id: str, event: EventBase) -> StoredEvent:
        """Log an event a user sent, then act on it."""
        if not isinstance(event, ActionBase):
            raise BadRequest("users send actions, not observations", field="observation")
        event = event.model_copy(update={"source": "user", "id": None, "timestamp": None})
        stored = await self.storage.append(conversation_id, event)
        match event:
            case MessageAction():
                run = self.run_of(conversation_id) or await self.start(conversation_id)
                run.deliver(event.model_copy(update={"id": stored.id}))
            case ChangeAgentStateAction() if event.args.agent_state == "stopped":
                await self.stop(conversation_id)
            case ChangeAgentStateAction() if event.args.agent_state == "running":
                await self.start(conversation_id)
            case CmdRunAction():
                if run := self.run_of(conversation_id):
                    run.run_user_action(event, stored)
        return stored

    async def _on_state(self, conversation_id: str, state: AgentState, reason: str) -> None:
        await self.storage.update_conversation(
            conversation_id, ConversationPatch(status=status_for(state), agent_state=state)
        )

    async def _record_end(self, conversation_id: str, state: AgentState, reason: str) -> None:
        await self.storage.append(
            conversation_id,
            AgentStateChangedObservation(
                source="environment",
                extras=AgentStateChangedExtras(agent_state=state, reason=reason),
            ),
        )
        await self._on_state(conversation_id, state, reason)


def _title_from(message: str | None) -> str:
    if not message:
        return "New conversation"
    first_line = message.strip().splitlines()[0] if message.strip() else ""
    return (first_line[:60] + "…") if len(first_line) > 60 else (first_line or "New conversation")


def _parse_replay(replay_json: str) -> list[EventBase]:
    """A recorded trajectory: a JSON array of events in wire shape."""
    try:
        documents = orjson.loads(replay_json)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"replay_json is not valid JSON: {exc}", field="replay_json") from None
    if not isinstance(documents, list):
        raise BadRequest("replay_json must be a JSON array of events", field="replay_json")
    events = []
    for index, document in enumerate(documents):
        try:
            events.append(parse_event(document))
        except EventValidationError as exc:
            field = f"replay_json[{index}]" + (f".{exc.field}" if exc.field else "")
            raise BadRequest(exc.problem, field=field, code="invalid_event") from None
    return events
