"""A small OpenAI-compatible chat-completions server that answers from a script.

A real HTTP server (Starlette on uvicorn, in the test's event loop): the LLM agent talks
to it through the real ``openai`` client. The reply to a request is chosen by how many
assistant turns the request's transcript already holds, so each conversation walks the
script from the start and the server keeps no per-conversation state.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import orjson
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from tests.server.running import free_port

Step = dict[str, Any]
"""``{"tools": [(name, arguments), ...]}`` or ``{"content": "text"}``."""


def tool(name: str, **arguments: Any) -> Step:
    return {"tools": [(name, arguments)]}


def tools(*calls: tuple[str, dict[str, Any]]) -> Step:
    return {"tools": list(calls)}


def say(text: str) -> Step:
    return {"content": text}


@dataclass
class ScriptedModel:
    script: list[Step]
    prompt_tokens: int = 1000
    completion_tokens: int = 100
    requests: list[dict[str, Any]] = field(default_factory=list)
    holds: dict[int, asyncio.Event] = field(default_factory=dict)
    """Request number (0 first) -> an event the reply waits for: a model call the test
    keeps in flight as long as it likes."""
    alternatives: dict[str, list[Step]] = field(default_factory=dict)
    """Another script for conversations whose first user message contains the key."""
    failures: int = 0
    """The next this many requests are answered 500 (the client retries)."""
    received: list[tuple[str | None, str | None, bytes]] = field(default_factory=list)
    """Each request as it came: its Content-Length, its Transfer-Encoding, its body."""
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def reply(self, body: dict[str, Any]) -> dict[str, Any]:
        self.requests.append(body)
        turn = sum(1 for message in body["messages"] if message["role"] == "assistant")
        first = next((m["content"] for m in body["messages"] if m["role"] == "user"), "")
        script = next(
            (steps for key, steps in self.alternatives.items() if key in str(first)), self.script
        )
        step = script[min(turn, len(script) - 1)]
        number = next(self._ids)
        message: dict[str, Any] = {"role": "assistant", "content": step.get("content")}
        if "tools" in step:
            message["tool_calls"] = [
                {
                    "id": f"call_{number}_{index}",
                    "type": "function",
                    "function": {"name": name, "arguments": orjson.dumps(arguments).decode()},
                }
                for index, (name, arguments) in enumerate(step["tools"])
            ]
        return {
            "id": f"chatcmpl-{number}",
            "object": "chat.completion",
            "created": 1_700_000_000,
            "model": body.get("model", "scripted"),
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "finish_reason": "tool_calls" if "tools" in step else "stop",
                }
            ],
            "usage": {
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens,
            },
        }


def app_for(model: ScriptedModel) -> Starlette:
    async def completions(request: Request) -> Response:
        raw = await request.body()
        headers = request.headers
        model.received.append(
            (headers.get("content-length"), headers.get("transfer-encoding"), raw)
        )
        if model.failures > 0:
            model.failures -= 1
            return Response(b'{"error":{"message":"busy"}}', status_code=500)
        body = orjson.loads(raw)
        hold = model.holds.get(len(model.requests))
        reply = model.reply(body)
        if hold is not None:
            await hold.wait()
        return Response(orjson.dumps(reply), media_type="application/json")

    return Starlette(routes=[Route("/v1/chat/completions", completions, methods=["POST"])])


@contextlib.asynccontextmanager
async def serving(model: ScriptedModel) -> AsyncIterator[str]:
    """Serve ``model`` on a free port; yields the base URL for the openai client."""
    port = free_port()
    config = uvicorn.Config(app_for(model), host="127.0.0.1", port=port, log_level="warning")
    server = uvicorn.Server(config)
    task = asyncio.create_task(server.serve())
    for _ in range(1000):  # uvicorn offers no "started" event to wait on
        if server.started or task.done():
            break
        await asyncio.sleep(0.01)
    if task.done():
        task.result()
    try:
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        server.should_exit = True
        await task
