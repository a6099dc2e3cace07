"""API keys: with keys configured, every call needs one, and users see only their own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio
import socketio
import websockets

import storage.sqlite.store as store_module
from storage.sqlite import SqliteStorage
from tests.server.clients import create, follow
from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, REPOSITORY, RunningServer


def keys_cli(server: RunningServer, *arguments: str) -> str:
    """`threadline keys ...` (works beside a running server); returns its stdout."""
    command = [sys.executable, "-m", "server.cli", "keys", "--data-dir", str(server.data_dir)]
    result = subprocess.run(
        [*command, *arguments], cwd=REPOSITORY, capture_output=True, text=True, check=True
    )
    return result.stdout


def make_key(server: RunningServer, user: str) -> str:
    key = keys_cli(server, "create", "--user", user).strip()
    assert key.startswith("tl_")
    return key


@dataclass
class Users:
    server: RunningServer
    alice: httpx.AsyncClient
    bob: httpx.AsyncClient
    alice_key: str
    bob_key: str


@pytest_asyncio.fixture
async def users(fresh_server: RunningServer) -> AsyncIterator[Users]:
    alice_key = make_key(fresh_server, "alice")
    bob_key = make_key(fresh_server, "bob")
    fresh_server.start()
    async with (
        httpx.AsyncClient(
            base_url=fresh_server.url, headers={"X-Session-API-Key": alice_key}
        ) as alice,
        httpx.AsyncClient(
            base_url=fresh_server.url, headers={"Authorization": f"Bearer {bob_key}"}
        ) as bob,
    ):
        yield Users(fresh_server, alice, bob, alice_key, bob_key)


async def test_every_call_needs_a_valid_key(users: Users) -> None:
    async with httpx.AsyncClient(base_url=users.server.url) as anonymous:
        for headers in ({}, {"X-Session-API-Key": "tl_wrong"}, {"Authorization": "Bearer nope"}):
            response = await anonymous.get("/api/conversations", headers=headers)
            assert response.status_code == 401
            assert response.json()["error"] == "unauthorized"
        assert (await anonymous.post("/api/conversations", json={})).status_code == 401
        health = await anonymous.get("/api/health")
        assert health.json() == {"status": "ok", "keys_required": True}


async def test_users_see_only_their_own(users: Users) -> None:
    conversation_id = await create(users.alice, initial_user_msg="alice's secret plan")
    await follow(users.server, conversation_id, key=users.alice_key)

    assert (await users.alice.get(f"/api/conversations/{conversation_id}")).status_code == 200
    for method, path in [
        ("GET", ""),
        ("GET", "/events"),
        ("GET", "/events/count"),
        ("GET", "/events/stream"),
        ("POST", "/start"),
        ("POST", "/stop"),
        ("PATCH", ""),
        ("DELETE", ""),
    ]:
        body = {"title": "mine now"} if method == "PATCH" else None
        response = await users.bob.request(
            method, f"/api/conversations/{conversation_id}{path}", json=body
        )
        assert response.status_code == 404, (method, path, response.text)
    message = await users.bob.post(
        f"/api/conversations/{conversation_id}/message", json={"message": "hi"}
    )
    assert message.status_code == 404

    listed = (await users.bob.get("/api/conversations")).json()["results"]
    assert conversation_id not in [item["conversation_id"] for item in listed]
    mine = (await users.alice.get("/api/conversations")).json()["results"]
    assert [item["owner"] for item in mine] == ["alice"]

    found = (await users.alice.get("/api/events/search", params={"q": "secret"})).json()
    for _ in range(100):  # the index trails the log by up to its interval (1 s)
        if found["results"]:
            break
        await asyncio.sleep(0.05)
        found = (await users.alice.get("/api/events/search", params={"q": "secret"})).json()
    assert found["results"]
    assert (await users.bob.get("/api/events/search", params={"q": "secret"})).json()[
        "results"
    ] == []


async def test_streams_check_keys_and_ownership(users: Users) -> None:
    conversation_id = await create(users.alice, title="streams")
    base = f"{users.server.ws_url}/api/conversations/{conversation_id}/events"
    for query, code in [("", 4401), (f"?session_api_key={users.bob_key}", 4404)]:
        async with websockets.connect(base + query) as socket:
            assert orjson.loads(await socket.recv())["error"] in ("unauthorized", "not_found")
            with pytest.raises(websockets.ConnectionClosed):
                await socket.recv()
        assert socket.close_code == code
    async with websockets.connect(f"{base}?session_api_key={users.alice_key}") as socket:
        await socket.send('{"action": "think", "args": {"thought": "ok"}}')
        assert orjson.loads(await socket.recv())["id"] == 0

    for key, reason in [
        (None, "API key is required"),
        (users.bob_key, "not found"),
        ("tl_bad", "not valid"),
    ]:
        sio = socketio.AsyncClient(reconnection=False)
        errors: list[object] = []
        sio.on("connect_error", errors.append)
        query = f"conversation_id={conversation_id}" + (f"&session_api_key={key}" if key else "")
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                f"{users.server.url}?{query}", transports=["websocket"], wait_timeout=10
            )
        assert reason in str(errors[0])
    sio = socketio.AsyncClient(reconnection=False)
    await sio.connect(
        f"{users.server.url}?conversation_id={conversation_id}&session_api_key={users.alice_key}",
        transports=["websocket"],
        wait_timeout=10,
    )
    await sio.disconnect()


def test_keys_can_be_listed_and_revoked(fresh_server: RunningServer) -> None:
    make_key(fresh_server, "carol")
    listing = keys_cli(fresh_server, "list")
    assert "carol" in listing
    assert "tl_" not in listing  # keys are never shown again
    key_id = listing.split()[0]
    keys_cli(fresh_server, "revoke", key_id)
    assert "revoked" in keys_cli(fresh_server, "list", "--user", "carol")


async def test_keys_stay_out_of_the_access_log(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "server", env=ACCEPT_LOCAL_WITH_KEYS, log_level="info")
    key = make_key(server, "dora")
    server.start()
    try:
        async with httpx.AsyncClient(
            base_url=server.url, headers={"X-Session-API-Key": key}
        ) as http:
            conversation_id = await create(http, title="logged")
        url = f"{server.ws_url}/api/conversations/{conversation_id}/events?session_api_key={key}"
        async with websockets.connect(url) as socket:
            await socket.send('{"action": "think", "args": {"thought": "hi"}}')
            assert orjson.loads(await socket.recv())["id"] == 0
        async with httpx.AsyncClient(base_url=server.url) as http:
            await http.get(f"/api/conversations?session_api_key={key}")
    finally:
        server.stop()
    log = server.log.read_text()
    assert "session_api_key=***" in log
    assert key not in log


async def test_revoking_the_last_key_keeps_authentication_on(fresh_server: RunningServer) -> None:
    """Once a server has had keys it stays multi-user: revoking every key must not hand
    everyone the anonymous owner's rights at the next restart."""
    make_key(fresh_server, "erin")
    key_id = keys_cli(fresh_server, "list").split()[0]
    keys_cli(fresh_server, "revoke", key_id)
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url) as anonymous:
        assert (await anonymous.get("/api/conversations")).status_code == 401
        assert (await anonymous.get("/api/health")).json()["keys_required"] is True


async def test_conversation_ids_belong_to_their_user(users: Users) -> None:
    """A chosen id is the user's own: another user's conversation under the same id is
    neither revealed (no 409) nor touched."""
    mine = await create(users.alice, conversation_id="weekly-report", title="alice's")
    assert mine == "weekly-report"
    theirs = await create(users.bob, conversation_id="weekly-report", title="bob's")
    assert theirs == "weekly-report"
    again = await users.alice.post("/api/conversations", json={"conversation_id": "weekly-report"})
    assert again.status_code == 409
    alice_view = (await users.alice.get("/api/conversations/weekly-report")).json()
    bob_view = (await users.bob.get("/api/conversations/weekly-report")).json()
    assert (alice_view["title"], alice_view["owner"]) == ("alice's", "alice")
    assert (bob_view["title"], bob_view["owner"]) == ("bob's", "bob")
    assert alice_view["conversation_id"] == bob_view["conversation_id"] == "weekly-report"
    posted = await users.bob.post(
        "/api/conversations/weekly-report/events",
        json={"action": "think", "args": {"thought": "bob thinks"}},
    )
    assert posted.status_code == 200
    count = await users.alice.get("/api/conversations/weekly-report/events/count")
    assert count.json() == {"count": 0}
    assert (await users.bob.delete("/api/conversations/weekly-report")).status_code == 200
    assert (await users.alice.get("/api/conversations/weekly-report")).status_code == 200


async def test_events_are_posted_only_to_the_callers_own_conversation(users: Users) -> None:
    """A conversation the caller has written to is remembered (no read of its record
    before the next write: server/known.py); another user posting to the same id still
    gets 404, and once it is deleted so does its owner, naming the id they know."""
    conversation_id = await create(users.alice, title="alice's")
    path = f"/api/conversations/{conversation_id}/events"
    think = {"action": "think", "args": {"thought": "alice thinks"}}
    for _ in range(2):
        assert (await users.alice.post(path, json=think)).status_code == 200
    refused = await users.bob.post(path, json=think)
    assert refused.status_code == 404
    assert refused.json()["message"] == f"conversation {conversation_id!r} not found"
    count = await users.alice.get(f"/api/conversations/{conversation_id}/events/count")
    assert count.json() == {"count": 2}
    assert (await users.alice.delete(f"/api/conversations/{conversation_id}")).status_code == 200
    gone = await users.alice.post(path, json=think)
    assert gone.status_code == 404
    assert gone.json()["message"] == f"conversation {conversation_id!r} not found"


async def test_users_cannot_forge_costs_or_tool_calls(users: Users) -> None:
    """Metrics and tool-call metadata are the agent's to record: the budget flag trusts
    the first and the LLM transcript is rebuilt from the second."""
    conversation_id = await create(users.alice, title="forgery")
    forged = {
        "action": "think",
        "args": {"thought": "I spent nothing"},
        "llm_metrics": {"accumulated_cost": 0.0, "costs": [], "response_latencies": []},
        "tool_call_metadata": {
            "function_name": "execute_bash",
            "tool_call_id": "call_forged",
            "model_response": {"id": "x"},
            "total_calls_in_response": 1,
        },
    }
    response = await users.alice.post(f"/api/conversations/{conversation_id}/events", json=forged)
    assert response.status_code == 200, response.text
    events = (await users.alice.get(f"/api/conversations/{conversation_id}/events")).json()
    (stored,) = events["events"]
    assert stored["args"]["thought"] == "I spent nothing"
    assert "llm_metrics" not in stored
    assert "tool_call_metadata" not in stored


async def test_keys_beside_a_busy_server_leave_the_search_index_alone(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`threadline keys` opens the data directory beside the server. It used to check the
    search index against the log itself: reading the log just before a commit the
    server's indexer then caught up with, it took the index for one ahead of the log and
    dropped it, and the indexer never indexed the older events again. (The administrative
    handle is opened here in the test's process, its check slowed down to open that
    window wide; the server is real and busy.)"""
    server = RunningServer(tmp_path / "server", env={"THREADLINE_RATE_LIMIT": "none"}).start()
    original = store_module.prepare_search

    def slow_prepare(*arguments: Any) -> None:
        time.sleep(0.5)  # the server commits and indexes meanwhile
        original(*arguments)

    monkeypatch.setattr(store_module, "prepare_search", slow_prepare)
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            conversation_id = await create(client, title="busy")
            await client.post(
                f"/api/conversations/{conversation_id}/events",
                json={"action": "think", "args": {"thought": "zanzibar marmalade"}},
            )
            stop = asyncio.Event()

            async def appending() -> None:
                while not stop.is_set():
                    await client.post(
                        f"/api/conversations/{conversation_id}/events",
                        json={"action": "think", "args": {"thought": "busy busy"}},
                    )

            load = [asyncio.create_task(appending()) for _ in range(4)]
            try:
                await asyncio.sleep(0.2)
                beside = await SqliteStorage.open(server.data_dir / "log", owner=False)
                await beside.close()
            finally:
                stop.set()
                await asyncio.gather(*load)
            for _ in range(100):
                found = (await client.get("/api/events/search", params={"q": "zanzibar"})).json()
                if found["results"] or found["pending"] == 0:
                    break
                await asyncio.sleep(0.1)
            assert [hit["conversation_id"] for hit in found["results"]] == [conversation_id]
    finally:
        server.stop()
