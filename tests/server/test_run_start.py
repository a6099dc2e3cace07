"""A run of the LLM agent starts from a bounded read of the log, however long it is.

The agent's chat is a fold of the log (`server.agents.rebuild`): folded in pieces it is
the chat the whole log gives, byte for byte (checked against the rule the agent used to
rebuild it with), so a chat kept from the last run only needs the events logged since.
The run-start test counts the events a real SQLite store hands out, through a real
`ConversationRun`, local sandbox and scripted model server.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
from openai import AsyncOpenAI

from events import (
    ActionBase,
    AgentThinkAction,
    AgentThinkObservation,
    ErrorObservation,
    EventBase,
    MessageAction,
    ObservationBase,
    ToolCallMetadata,
    digest,
)
from events.actions import MessageArgs, ThinkArgs
from runtime.local import LocalRuntime
from server.agents.chat import LiveModel
from server.agents.llm import SYSTEM_PROMPT, LLMAgent
from server.agents.rebuild import ChatCache, ChatRebuild
from server.agents.tools import TOOLS
from server.agents.transcript import Transcript
from server.controller import ConversationRun, RunLimits
from storage import NewConversation, Storage
from storage.factory import open_storage
from tests.fakes.model_server import ScriptedModel, serving, tool


def _reference(history: list[EventBase]) -> Transcript:
    """The rule the agent rebuilt its chat with before the fold (kept as the spec)."""
    messages = Transcript(model="m", tools=TOOLS)
    messages.add({"role": "system", "content": "s"})
    answered: dict[str, str] = {}
    for event in history:
        metadata = event.tool_call_metadata
        if isinstance(event, ObservationBase) and metadata is not None:
            answered[metadata.tool_call_id] = event.content
    pending: list[dict[str, Any]] = []
    for event in history:
        metadata = event.tool_call_metadata
        if isinstance(event, MessageAction) and metadata is None:
            role = "user" if event.source == "user" else "assistant"
            messages.add({"role": role, "content": event.args.content})
        elif isinstance(event, ActionBase) and metadata is not None:
            pending.append(
                {
                    "id": metadata.tool_call_id,
                    "type": "function",
                    "function": {
                        "name": metadata.function_name,
                        "arguments": orjson.dumps(event.args.model_dump()).decode(),
                    },
                }
            )
            if len(pending) == metadata.total_calls_in_response:
                messages.add({"role": "assistant", "content": None, "tool_calls": pending})
                for done in pending:
                    answer = answered.get(done["id"], "(no result was recorded)")
                    messages.add({"role": "tool", "tool_call_id": done["id"], "content": answer})
                pending = []
    return messages


def _think(call: str, calls: int = 1) -> AgentThinkAction:
    metadata = ToolCallMetadata(
        function_name="think", tool_call_id=call, model_response={}, total_calls_in_response=calls
    )
    return AgentThinkAction(
        source="agent", args=ThinkArgs(thought=f"t{call}"), tool_call_metadata=metadata
    )


def _answer(call: str, text: str) -> AgentThinkObservation:
    metadata = ToolCallMetadata(
        function_name="think", tool_call_id=call, model_response={}, total_calls_in_response=1
    )
    return AgentThinkObservation(source="agent", content=text, tool_call_metadata=metadata)


def _said(source: str, text: str) -> MessageAction:
    return MessageAction(source=source, args=MessageArgs(content=text))  # type: ignore[arg-type]


def test_the_chat_folded_in_pieces_is_the_chat_of_the_whole_log() -> None:
    history: list[EventBase] = [
        _said("user", "go"),
        _think("a"),
        _answer("a", "noted a"),
        _think("b", 2),  # two calls in one response: written when both are logged
        _answer("b", "noted b"),
        _said("user", "meanwhile"),
        _think("c", 2),
        _said("user", "before c's answer"),  # logged between a call and its answer
        _answer("c", "noted c"),
        ErrorObservation(source="agent", content="bad call"),
        _think("a"),  # a call id used again: every message of it gets the last answer
        _answer("a", "noted a again"),
        _said("agent", "a question"),
        _answer("z", "an answer before its call"),
        _think("z"),
        _think("f"),  # no answer ever
        _said("user", "next run"),
    ]
    history = [event.model_copy(update={"id": i}) for i, event in enumerate(history)]
    expected = _reference(history)
    for split in range(len(history) + 1):
        chat = ChatRebuild(model="m", system="s")
        chat.fold(history[:split])
        chat.transcript.copy().request_body()  # a copy used meanwhile changes nothing
        chat.fold(history[split:])
        assert chat.transcript.request_body() == expected.request_body(), split
        assert chat.transcript.digests() == expected.digests()
        assert chat.transcript.request_digest() == digest(expected.request_body())
        assert chat.through == len(history) - 1


class CountingStore:
    """A real store, counting the events its history reads hand out."""

    def __init__(self, store: Storage) -> None:
        self._store = store
        self.events_read = 0

    async def search_events(self, conversation_id: str, **query: Any) -> Any:
        page = await self._store.search_events(conversation_id, **query)
        self.events_read += len(page.events)
        return page

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


async def test_a_run_start_reads_only_what_was_logged_since_the_last_run(
    tmp_path: Path,
) -> None:
    steps = 40
    thoughts = [tool("think", thought=f"step {n}") for n in range(steps)]
    model = ScriptedModel([*thoughts, tool("finish", message="done")])
    store = CountingStore(await open_storage(str(tmp_path / "data")))
    chats = ChatCache()
    record = await store.create_conversation(NewConversation())
    cid = record.id
    try:
        async with serving(model) as base_url:
            client = AsyncOpenAI(base_url=base_url, api_key="x", max_retries=0)

            async def run(message: str) -> int:
                await store.append(cid, _said("user", message))
                before = store.events_read
                agent = LLMAgent(LiveModel(client), model="m", chats=chats)
                ended = asyncio.Event()
                run = ConversationRun(
                    cid,
                    storage=store,  # type: ignore[arg-type]
                    runtime=LocalRuntime(tmp_path / "workspace"),
                    agent=agent,
                    limits=RunLimits(),
                    on_end=lambda _: ended.set(),
                )
                await run.begin()
                await run.wait()
                await run.settled.wait()
                assert run.state == "finished", run.final_reason
                return store.events_read - before

            first = await run("think it through")
            logged = await store.latest_event_id(cid) + 1
            assert logged > 3 * steps
            model.script = [tool("finish", message="done again")]
            second = await run("once more")
            # The second run read the events since the first one's end (the user's
            # message and the state changes around it) and what it logged itself.
            second_logged = await store.latest_event_id(cid) + 1 - logged
            assert second <= 2 + second_logged, (second, second_logged)
            assert first >= logged - 1  # the first run folded its own events at its end
            # Its request carried the whole chat: every step of the first run.
            last = model.requests[-1]["messages"]
            assert last[0] == {"role": "system", "content": SYSTEM_PROMPT}
            assert sum(m["role"] == "tool" for m in last) == steps + 1
            assert last[-1] == {"role": "user", "content": "once more"}
            # Deleted and created again under the same id: the kept chat is not its chat.
            await store.delete_conversation(cid)
            await store.create_conversation(NewConversation(id=cid))
            await run("a new start")
            assert model.requests[-1]["messages"][1:] == [
                {"role": "user", "content": "a new start"}
            ]
            await client.close()
    finally:
        await store.close()
