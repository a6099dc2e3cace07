"""The chat transcript the LLM agent sends, kept as JSON bytes.

Every turn re-sends the whole chat. Building the request from Python objects each time
(the openai client validates and transforms every message of every call) made a step
cost grow with the conversation: 0.7 s per call after 2,000 steps. Here each message is
encoded once, when it joins, and a request is the pieces joined.
"""

from __future__ import annotations

import hashlib
from typing import Any

import orjson


class Transcript:
    def __init__(self, *, model: str, tools: list[Any]) -> None:
        self._head = orjson.dumps({"model": model, "tools": tools, "tool_choice": "auto"})[:-1]
        self._messages: list[bytes] = []

    def add(self, message: dict[str, Any]) -> None:
        self._messages.append(orjson.dumps(message))

    def __len__(self) -> int:
        return len(self._messages)

    def request_body(self) -> bytes:
        """``{"model": ..., "tools": ..., "tool_choice": "auto", "messages": [...]}``."""
        return self._head + b',"messages":[' + b",".join(self._messages) + b"]}"

    def digests(self) -> list[str]:
        """A short digest of each message's bytes, in order (what a re-run compares)."""
        return [hashlib.sha256(message).hexdigest()[:16] for message in self._messages]

    def messages(self) -> list[Any]:
        """The messages decoded (for tests and debugging)."""
        return [orjson.loads(message) for message in self._messages]
