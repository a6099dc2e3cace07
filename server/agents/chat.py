"""Where the LLM agent's chat requests go: a live model, or a recording of one.

`ChatRequest` is one call as posted: its exact bytes, its number in the conversation,
and the digests of the chat's messages (for a re-run to say where it left the
recording). A `ChatModel` answers it with the reply's bytes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import httpx2
from openai import AsyncOpenAI

from server.agents.transcript import RequestBody


@dataclass(frozen=True, slots=True)
class ChatRequest:
    body: RequestBody
    call: int
    """The conversation's model calls are numbered 0, 1, ... across its runs."""
    message_digests: list[str]
    """One per message of the chat, in order."""
    first_new: int
    """Messages before this index were in the previous call of the same run."""
    digest: str
    """`events.digest` of ``body``."""


class ChatModel(Protocol):
    async def complete(self, request: ChatRequest) -> bytes:
        """The reply's bytes (a chat completion as JSON)."""
        ...


class LiveModel:
    """An OpenAI-compatible server, through the openai client (base URL, auth, retries,
    timeouts); the request is posted as the bytes given."""

    def __init__(self, client: AsyncOpenAI) -> None:
        self._client = client

    async def complete(self, request: ChatRequest) -> bytes:
        body = request.body
        raw = await self._client.post(
            "/chat/completions",
            cast_to=httpx2.Response,  # the client's own HTTP library: the raw reply
            content=body,  # an async iterable, with read/seek for the retries
            options={
                "headers": {"Content-Type": "application/json", "Content-Length": str(len(body))}
            },
        )
        return raw.content
