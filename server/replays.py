"""Replays of recorded conversations: how one is created, and which agent runs it.

A replay is a conversation of its own whose record names its recording (another
conversation: an import, or any earlier conversation) and how to replay it, in its
settings as ``replay: {"mode", "source"}``:

- ``view``: nothing runs; the recording is imported as it is (`server.imports`).
- ``execute``: the recorded user and agent actions are executed again in a fresh sandbox
  (`server.agents.replay.ReplayAgent`), as OpenHands' ``replay_json`` does.
- ``recorded``: the recording's agent runs again, answered from the recorded model
  exchanges instead of its model (`server.agents.rerun.RerunAgent`).

A recording sent with ``replay_json`` (or to the import endpoint) for ``execute`` or
``recorded`` is first imported as a conversation of its own (trigger ``import``), so the
replay and its recording can be compared, exported and replayed again; if the replay
cannot be created, the import is removed. Until the replay completes (its summary is
written into ``replay``), every run of the conversation is the replay's; afterwards the
conversation is an ordinary one, and a message goes to its agent.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Literal, cast, get_args

from events import EventBase
from runtime import RuntimeFailure
from server.agents import Agent, Agents
from server.agents.replay import ReplayAgent
from server.agents.rerun import RecordedModel, RerunAgent, rerun_script
from server.auth import User, public_id, scoped_id
from server.errors import BadRequest
from server.imports import recording_events
from server.runtimes import check_new_conversation
from storage import ConversationNotFound, ConversationRecord, NewConversation, Storage
from storage.models import new_conversation_id

if TYPE_CHECKING:
    from server.service import ConversationService

logger = logging.getLogger(__name__)

ReplayMode = Literal["view", "execute", "recorded"]
REPLAY_MODES: tuple[str, ...] = get_args(ReplayMode)


def replay_mode(raw: str | None, default: ReplayMode) -> ReplayMode:
    """Raises `BadRequest` naming ``replay_mode``."""
    if raw is None or raw == "":
        return default
    if raw not in REPLAY_MODES:
        raise BadRequest(
            f"replay_mode must be one of {', '.join(REPLAY_MODES)}, got {raw[:40]!r}",
            field="replay_mode",
        )
    return cast(ReplayMode, raw)


async def recording_of(storage: Storage, conversation_id: str) -> list[EventBase]:
    """Every event of the recording, oldest first. Raises `RuntimeFailure` when it is
    gone."""
    events: list[EventBase] = []
    start: int | None = 0
    try:
        while start is not None:
            page = await storage.search_events(conversation_id, start_id=start)
            events.extend(stored.to_event() for stored in page.events)
            start = page.next_cursor
    except ConversationNotFound:
        raise RuntimeFailure(
            f"the recording {public_id(conversation_id)!r} was deleted; nothing to replay"
        ) from None
    return events


def agent_for(agents: Agents, storage: Storage, record: ConversationRecord, default: str) -> Agent:
    """The agent of the conversation's next run: its replay's, until that completes."""
    name = record.settings.get("agent", default)
    instructions = record.settings.get("conversation_instructions")
    replay = record.settings.get("replay")
    if not isinstance(replay, dict) or replay.get("complete") or replay.get("mode") == "view":
        return agents.make(name, instructions)
    source = str(replay.get("source"))

    async def recording() -> list[EventBase]:
        return await recording_of(storage, source)

    if replay.get("mode") == "execute":
        return ReplayAgent(recording, record.settings)

    def answered_by(model: RecordedModel) -> Agent:
        return agents.make(name, instructions, recorded=model)

    return RerunAgent(recording, answered_by, record.settings)


async def start_replay(
    service: ConversationService,
    user: User,
    source: ConversationRecord,
    mode: ReplayMode,
    *,
    conversation_id: str | None = None,
    title: str | None = None,
    priority: int | None = None,
    max_iterations: int | None = None,
    max_budget: float | None = None,
) -> ConversationRecord:
    """A new conversation replaying ``source`` (``execute`` or ``recorded``), its run
    admitted under the owner's caps. Raises `ApiError` (a refusal writes nothing)."""
    settings = service.settings
    check_new_conversation(
        settings,
        keys_required=user.name is not None,
        repository=source.repository,
        git_provider=source.git_provider,
    )
    agent = source.settings.get("agent") or ("llm" if mode == "recorded" else settings.agent)
    kept: dict[str, Any] = {
        key: source.settings[key]
        for key in ("conversation_instructions", "mcp_config")
        if key in source.settings
    }
    new = NewConversation(
        id=scoped_id(user, conversation_id or new_conversation_id()),
        owner=user.name,
        title=title or f"Replay of {source.title}"[:200],
        repository=source.repository,
        selected_branch=source.selected_branch,
        git_provider=source.git_provider,
        trigger="replay",
        max_iterations=max_iterations or settings.max_iterations,
        max_budget=max_budget,
        priority=priority or source.priority,
        settings={**kept, "agent": agent, "replay": {"mode": mode, "source": source.id}},
    )
    first: list[EventBase] = []
    if mode == "recorded":
        first = list(rerun_script(await recording_of(service.storage, source.id)).first)
    async with service.runs.admission(new.id) as admission:
        admission.check(user.name)  # a refusal writes nothing
        if first:
            record, _ = await service.storage.create_conversation_with_events(new, first)
        else:
            record = await service.storage.create_conversation(new)
        await admission.admit(record.id, record.owner, record.priority)
    return await service.storage.get_conversation(record.id)


async def import_and_replay(
    service: ConversationService,
    user: User,
    documents: list[Any],
    mode: ReplayMode,
    *,
    name: str,
    title: str,
    conversation_id: str | None = None,
    agent: str | None = None,
    **limits: Any,
) -> tuple[ConversationRecord, ConversationRecord]:
    """Import the recording as a conversation of its own, then start its replay;
    returns (replay, recording). The import is removed if the replay is refused."""
    settings = service.settings
    check_new_conversation(  # before anything is written
        settings, keys_required=user.name is not None, repository=None, git_provider=None
    )
    recording = NewConversation(
        id=scoped_id(user, new_conversation_id()),
        owner=user.name,
        title=f"Recording: {title}"[:200],
        trigger="import",
        max_iterations=settings.max_iterations,
        settings={"agent": agent or ("llm" if mode == "recorded" else settings.agent)},
    )
    source, _ = await service.storage.create_conversation_with_events(
        recording, recording_events(documents, name=name)
    )
    try:
        replay = await start_replay(
            service, user, source, mode, conversation_id=conversation_id, title=title,
            **limits,
        )  # fmt: skip
    except BaseException:
        try:
            await service.storage.delete_conversation(source.id)
        except Exception as exc:
            logger.warning("could not remove the recording %s: %s", source.id, exc)
        raise
    return replay, source
