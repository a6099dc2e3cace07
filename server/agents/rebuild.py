"""The LLM agent's chat, rebuilt from the log, one event at a time.

A run of the LLM agent starts from the chat the log implies: the user's and the agent's
messages, each response's tool calls once all of them are logged, then each call's
answer (the content of the observation logged for it, wherever it is in the log, the
last one when there are several; "(no result was recorded)" when there is none).

`ChatRebuild` folds events into that chat in log order, so the same chat comes out
whether the log is folded at once or in pieces: a fold kept from an earlier run of the
conversation (`ChatCache`) only needs the events logged since. An answer logged after
its call's message was written rewrites that message (a call's observation follows its
action; the message is near the end).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Iterable
from typing import Any

import orjson

from events import ActionBase, EventBase, MessageAction, ModelExchangeObservation, ObservationBase
from server.agents.tools import TOOLS
from server.agents.transcript import Transcript

NO_RESULT = "(no result was recorded)"
CACHE_BYTES = 64 * 1024 * 1024
"""What the kept chats of idle conversations may hold, together."""


class ChatRebuild:
    def __init__(self, *, model: str, system: str) -> None:
        self.key = (model, system)
        """What the chat was started with: a kept chat serves only the same key."""
        self.transcript = Transcript(model=model, tools=TOOLS)
        self.transcript.add({"role": "system", "content": system})
        self.through = -1
        """The id of the last event folded in."""
        self.last: EventBase | None = None
        """That event: a log deleted and written again under the same id does not have
        the same event there."""
        self.model_calls = 0
        """``model_exchange`` events folded in: the number of the conversation's next call."""
        self._pending: list[dict[str, Any]] = []
        self._slots: dict[str, list[int]] = {}
        """Tool-answer messages written, by call id."""
        self._early: dict[str, str] = {}
        """Answers logged before their call's message was written."""

    def fold(self, events: Iterable[EventBase]) -> None:
        for event in events:
            self._fold(event)
            if event.id is not None and event.id > self.through:
                self.through, self.last = event.id, event

    def _fold(self, event: EventBase) -> None:
        metadata = event.tool_call_metadata
        if isinstance(event, ModelExchangeObservation):
            self.model_calls += 1
        if isinstance(event, ObservationBase) and metadata is not None:
            self._answered(metadata.tool_call_id, event.content)
        if isinstance(event, MessageAction) and metadata is None:
            role = "user" if event.source == "user" else "assistant"
            self.transcript.add({"role": role, "content": event.args.content})
        elif isinstance(event, ActionBase) and metadata is not None:
            self._pending.append(
                {
                    "id": metadata.tool_call_id,
                    "type": "function",
                    "function": {
                        "name": metadata.function_name,
                        "arguments": orjson.dumps(event.args.model_dump()).decode(),
                    },
                }
            )
            if len(self._pending) == metadata.total_calls_in_response:
                self._write_calls()

    def _answered(self, call_id: str, content: str) -> None:
        slots = self._slots.get(call_id)
        if slots is None:
            self._early[call_id] = content
            return
        for index in slots:
            self.transcript.replace(index, _tool(call_id, content))

    def _write_calls(self) -> None:
        calls, self._pending = self._pending, []
        self.transcript.add({"role": "assistant", "content": None, "tool_calls": calls})
        for call in calls:
            call_id = call["id"]
            slots = self._slots.setdefault(call_id, [])
            if call_id in self._early:
                answer = self._early.pop(call_id)
            elif slots:  # a call id used again: its answer so far
                answer = self.transcript.message(slots[-1])["content"]
            else:
                answer = NO_RESULT
            slots.append(len(self.transcript))
            self.transcript.add(_tool(call_id, answer))


def _tool(call_id: str, content: str) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


class ChatCache:
    """The chats of conversations whose runs ended in this process, so the next run
    folds in only what was logged since. Bounded by `CACHE_BYTES`: the least recently
    used go first (their next run folds the whole log again)."""

    def __init__(self, limit: int = CACHE_BYTES) -> None:
        self._limit = limit
        self._kept: OrderedDict[str, ChatRebuild] = OrderedDict()
        self._size = 0

    def take(self, conversation_id: str) -> ChatRebuild | None:
        kept = self._kept.pop(conversation_id, None)
        if kept is not None:
            self._size -= kept.transcript.size
        return kept

    def put(self, conversation_id: str, chat: ChatRebuild) -> None:
        self.take(conversation_id)
        self._kept[conversation_id] = chat
        self._size += chat.transcript.size
        while self._size > self._limit and self._kept:
            _, dropped = self._kept.popitem(last=False)
            self._size -= dropped.transcript.size

    def __len__(self) -> int:
        return len(self._kept)
