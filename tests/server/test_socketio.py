"""Socket.IO (OpenHands V0 protocol) with python-socketio's AsyncClient."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import pytest
import socketio

from tests.server.clients import agent_state, create, ended, follow, ids
from tests.server.running import RunningServer


class Watcher:
    """A Socket.IO client that records ``oh_event``s and can wait for a condition."""

    def __init__(self) -> None:
        self.client = socketio.AsyncClient(reconnection=False)
        self.events: list[dict[str, Any]] = []
        self.changed = asyncio.Condition()
        self.client.on("oh_event", self._on_event)

    async def _on_event(self, event: dict[str, Any]) -> None:
        async with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    async def connect(
        self, url: str, conversation_id: str, latest_event_id: int = -1, **query: str
    ) -> None:
        params = "&".join(
            f"{name}={value}"
            for name, value in {
                "conversation_id": conversation_id,
                "latest_event_id": latest_event_id,
                **query,
            }.items()
        )
        await self.client.connect(f"{url}?{params}", transports=["websocket"], wait_timeout=10)

    async def wait_until(self, predicate: Any, time_limit: float = 30) -> None:
        async with asyncio.timeout(time_limit), self.changed:
            await self.changed.wait_for(lambda: any(predicate(e) for e in self.events))


async def test_watch_a_run_from_the_start(client: httpx.AsyncClient, server: RunningServer) -> None:
    conversation_id = await create(client, initial_user_msg="watch me")
    watcher = Watcher()
    await watcher.connect(server.url, conversation_id)
    await watcher.wait_until(ended)
    await watcher.client.disconnect()
    assert ids(watcher.events) == list(range(len(watcher.events)))
    assert agent_state(watcher.events[-1]) == "finished"
    stored = await follow(server, conversation_id)
    assert watcher.events == stored


async def test_resume_after_a_drop_is_gapless(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, initial_user_msg="resume me")
    first = Watcher()
    await first.connect(server.url, conversation_id)
    await first.wait_until(lambda e: e["id"] >= 6)
    await first.client.disconnect()  # mid-run: the agent keeps appending meanwhile
    last_seen = first.events[-1]["id"]
    second = Watcher()
    await second.connect(server.url, conversation_id, latest_event_id=last_seen)
    await second.wait_until(ended)
    await second.client.disconnect()
    sequence = ids(first.events) + ids(second.events)
    assert sequence == list(range(len(sequence)))
    assert ended(second.events[-1])


async def test_user_actions_are_acknowledged_and_streamed(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="actions")
    watcher = Watcher()
    await watcher.connect(server.url, conversation_id)
    ack = await watcher.client.call(
        "oh_user_action", {"action": "think", "args": {"thought": "from socket.io"}}, timeout=10
    )
    assert ack == {"status": "ok", "event_id": 0}
    await watcher.wait_until(lambda e: e.get("args", {}).get("thought") == "from socket.io")
    assert watcher.events[0]["source"] == "user"
    bad = await watcher.client.call("oh_action", {"action": "teleport"}, timeout=10)
    assert bad["status"] == "error"
    assert bad["field"] == "action"
    message = await watcher.client.call(
        "oh_user_action", {"action": "message", "args": {"content": "go"}}, timeout=10
    )
    assert message["status"] == "ok"
    await watcher.wait_until(ended)  # the message started the demo agent
    await watcher.client.disconnect()


@pytest.mark.parametrize(
    ("query", "reason"),
    [
        ({}, "conversation_id is required"),
        ({"conversation_id": "no-such-conversation"}, "not found"),
        ({"conversation_id": "CID", "latest_event_id": "soon"}, "latest_event_id"),
    ],
)
async def test_refused_connections_say_why(
    client: httpx.AsyncClient, server: RunningServer, query: dict[str, str], reason: str
) -> None:
    conversation_id = await create(client, title="refusals")
    query = {name: value.replace("CID", conversation_id) for name, value in query.items()}
    sio = socketio.AsyncClient(reconnection=False)
    errors: list[Any] = []
    sio.on("connect_error", errors.append)
    params = "&".join(f"{name}={value}" for name, value in query.items())
    with pytest.raises(socketio.exceptions.ConnectionError):
        await sio.connect(f"{server.url}?{params}", transports=["websocket"], wait_timeout=10)
    assert errors
    assert reason in str(errors[0])
