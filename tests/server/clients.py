"""Small client-side helpers for server tests: create conversations, follow streams."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import httpx
import orjson
import websockets

from tests.server.running import RunningServer

Event = dict[str, Any]
ENDED = ("finished", "stopped", "error", "rejected")


def agent_state(event: Event) -> str | None:
    if event.get("observation") == "agent_state_changed":
        return event["extras"]["agent_state"]  # type: ignore[no-any-return]
    return None


def ended(event: Event) -> bool:
    return agent_state(event) in ENDED


async def create(client: httpx.AsyncClient, **body: Any) -> str:
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text
    return response.json()["conversation_id"]  # type: ignore[no-any-return]


async def follow(
    server: RunningServer,
    conversation_id: str,
    *,
    after: int = -1,
    until: Callable[[Event], bool] = ended,
    key: str | None = None,
    time_limit: float = 30.0,
) -> list[Event]:
    """Events over the plain WebSocket from ``after`` until one satisfies ``until``."""
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events?latest_event_id={after}"
    if key:
        url += f"&session_api_key={key}"
    received: list[Event] = []
    async with asyncio.timeout(time_limit), websockets.connect(url) as socket:
        async for message in socket:
            event = orjson.loads(message)
            received.append(event)
            if until(event):
                return received
    return received


async def run_to_end(
    client: httpx.AsyncClient, server: RunningServer, **body: Any
) -> tuple[str, list[Event]]:
    """Create a conversation and follow it until its agent's run ends."""
    conversation_id = await create(client, **body)
    return conversation_id, await follow(server, conversation_id)


def ids(events: list[Event]) -> list[int]:
    return [event["id"] for event in events]
