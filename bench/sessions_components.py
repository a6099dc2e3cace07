"""`bench/sessions.py` (b), after the runs: the parts of a controller step timed alone in
this process, with both servers idle: one model call with the agent's transcript after
h steps, made the agent's way (the ``openai`` client's ``chat.completions.create``) and
three cheaper ways (`CALLS`), and `SqliteStorage.append` awaited one at a time (what
each action and observation waits for).
"""

from __future__ import annotations

import shutil
import statistics
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Any

import httpx
import orjson
from openai import AsyncOpenAI
from openai.types.chat import ChatCompletion

from bench.common import Metrics
from bench.sessions_model import THOUGHT, marker
from bench.sessions_server import FakeModel
from events import AgentThinkAction, LLMMetrics, ToolCallMetadata
from events.actions import ThinkArgs
from events.base import TokenUsage
from server.agents.llm import SYSTEM_PROMPT
from server.agents.tools import TOOLS
from storage import NewConversation
from storage.sqlite import SqliteStorage

TOOL_ANSWER = "Your thought has been logged."


def transcript(steps: int) -> list[dict[str, Any]]:
    """The messages the LLM agent sends after ``steps`` think steps."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": SYSTEM_PROMPT},
        {"role": "user", "content": f"{marker('components', 10**9)} Think it through."},
    ]
    arguments = orjson.dumps({"thought": THOUGHT}).decode()
    for step in range(steps):
        call = {
            "id": f"call_{step}",
            "type": "function",
            "function": {"name": "think", "arguments": arguments},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": f"call_{step}", "content": TOOL_ANSWER})
    return messages


async def components(
    histories: Sequence[int], calls: int, appends: int, model: FakeModel, root: Path
) -> Metrics:
    """Per transcript length h of ``histories``, median ms of one model call made four
    ways (see `CALLS`), ``calls`` times (fewer for long transcripts); then the median µs
    of one awaited append, of ``appends``."""
    found: Metrics = {}
    client = AsyncOpenAI(base_url=model.base_url, api_key="bench", max_retries=0)
    raw = httpx.AsyncClient(timeout=120)
    try:
        for steps in histories:
            params = {
                "model": "bench-instant",
                "messages": transcript(steps),
                "tools": TOOLS,
                "tool_choice": "auto",
            }
            times = max(3, calls // max(1, steps // 100))
            for label in CALLS:
                call = _call(label, client, raw, model.base_url, params)
                found[f"component.{steps}.{label}_ms"] = await _median_ms(call, times)
            found[f"component.{steps}.body_kib"] = len(orjson.dumps(params)) / 1024
    finally:
        await client.close()
        await raw.aclose()
    found["component.append_us"] = await _append_us(appends, root)
    return found


CALLS = ("create", "post_body", "post_bytes", "httpx")
"""How a model call is made: ``openai`` ``chat.completions.create(**params)`` (what the
agent does); the client's ``post("/chat/completions", body=params)``, which skips
``create``'s params transform; ``post(content=orjson.dumps(params))``, which also skips
its stdlib JSON encoding; and the same bytes through bare ``httpx`` with ``orjson.loads``
of the answer (no client library at all)."""

JSON_HEADERS = {"Content-Type": "application/json"}


def _call(
    label: str, client: AsyncOpenAI, raw: httpx.AsyncClient, base_url: str, params: dict[str, Any]
) -> Callable[[], Awaitable[object]]:
    body = orjson.dumps(params)
    match label:
        case "create":
            return lambda: client.chat.completions.create(**params)
        case "post_body":
            return lambda: client.post("/chat/completions", body=params, cast_to=ChatCompletion)
        case "post_bytes":
            return lambda: client.post(
                "/chat/completions",
                content=body,
                cast_to=ChatCompletion,
                options={"headers": JSON_HEADERS},
            )

    async def bare() -> object:
        response = await raw.post(
            f"{base_url}/chat/completions", content=body, headers=JSON_HEADERS
        )
        return orjson.loads(response.content)

    return bare


async def _median_ms(call: Callable[[], Awaitable[object]], times: int) -> float:
    await call()  # warm
    samples = []
    for _ in range(times):
        started = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


async def _append_us(count: int, root: Path) -> float:
    """Median µs of one awaited `SqliteStorage.append` of an agent's think action, one
    after another in one conversation (what every logged step waits for)."""
    directory = Path(tempfile.mkdtemp(prefix="append-", dir=root))
    try:
        async with await SqliteStorage.open(directory) as storage:
            record = await storage.create_conversation(NewConversation(title="append"))
            metadata = ToolCallMetadata(
                function_name="think",
                tool_call_id="call_1",
                model_response={"id": "chatcmpl-1", "model": "bench-instant"},
                total_calls_in_response=1,
            )
            metrics = LLMMetrics(
                accumulated_cost=0.0,
                accumulated_token_usage=TokenUsage(
                    model="bench-instant", prompt_tokens=1000, completion_tokens=40
                ),
            )
            action = AgentThinkAction(
                source="agent",
                args=ThinkArgs(thought=THOUGHT),
                tool_call_metadata=metadata,
                llm_metrics=metrics,
            )
            samples = []
            for _ in range(count):
                started = time.perf_counter()
                await storage.append(record.id, action)
                samples.append((time.perf_counter() - started) * 1e6)
            return statistics.median(samples[count // 10 :])
    finally:
        shutil.rmtree(directory, ignore_errors=True)
