"""A chat-completions reply, read straight from its JSON.

The openai client carries the request (base URL, auth, retries, timeouts); the reply is
read here into the few fields the agent uses, without building the client's full
response model for every step.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson


@dataclass(frozen=True, slots=True)
class ToolCall:
    id: str
    name: str
    arguments: str

    def as_message_part(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True, slots=True)
class Reply:
    id: str
    model: str
    content: str | None
    tool_calls: list[ToolCall]
    prompt_tokens: int
    completion_tokens: int


class MalformedReply(ValueError):
    pass


def parse_reply(body: bytes) -> Reply:
    """Raises `MalformedReply` saying what is missing."""
    try:
        data = orjson.loads(body)
        message = data["choices"][0]["message"]
        calls = [
            ToolCall(call["id"], call["function"]["name"], call["function"].get("arguments") or "")
            for call in message.get("tool_calls") or []
            if call.get("type", "function") == "function" and "function" in call
        ]
        usage = data.get("usage") or {}
        return Reply(
            id=data.get("id") or "",
            model=data.get("model") or "",
            content=message.get("content"),
            tool_calls=calls,
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
    except (orjson.JSONDecodeError, KeyError, IndexError, TypeError, ValueError) as exc:
        raise MalformedReply(f"the model's reply is not a chat completion: {exc!r}") from None
