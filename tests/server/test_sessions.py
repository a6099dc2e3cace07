"""The session manager on a real server: caps, the three policies, priority queue, idle
close, and admission under concurrent creations."""

from __future__ import annotations

import asyncio
from pathlib import Path

import httpx

from tests.fakes.model_server import ScriptedModel, say, serving
from tests.server.clients import Event, agent_state, create, follow
from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, RunningServer
from tests.server.test_auth import make_key


def _env(**settings: str) -> dict[str, str]:
    return {f"THREADLINE_{name.upper()}": value for name, value in settings.items()}


def _running(event: Event) -> bool:
    return agent_state(event) == "running"


async def test_reject_at_the_cap_writes_nothing(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "s", env=_env(max_running="2", at_cap="reject", demo_pace="1")
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/api/conversations", json={"initial_user_msg": f"job {i}"})
                    for i in range(6)
                )
            )
            codes = sorted(response.status_code for response in responses)
            assert codes == [201, 201, 429, 429, 429, 429]
            refusal = next(r.json() for r in responses if r.status_code == 429)
            assert refusal["error"] == "too_many_requests"
            assert refusal["cap"] == 2
            assert "global cap is 2" in refusal["message"]
            listed = (await client.get("/api/conversations")).json()["results"]
            assert len(listed) == 2
            sessions = (await client.get("/api/sessions")).json()
            assert sessions["running_count"] == 2
            assert sessions["caps"]["policy"] == "reject"
    finally:
        server.stop()


async def test_evict_oldest_stops_the_least_recently_active(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "s", env=_env(max_running="2", at_cap="evict_oldest", demo_pace="1")
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            first = await create(client, initial_user_msg="first")
            await follow(server, first, until=_running)
            second = await create(client, initial_user_msg="second")
            await follow(server, second, until=_running)
            third = await create(client, initial_user_msg="third")
            evicted = await follow(server, first)
            assert agent_state(evicted[-1]) == "stopped"
            assert evicted[-1]["extras"]["reason"].startswith("evicted to make room")
            await follow(server, third, until=_running)
            sessions = (await client.get("/api/sessions")).json()
            assert sorted(sessions["running"]) == sorted([second, third])
    finally:
        server.stop()


async def test_the_queue_runs_by_priority_then_arrival(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "s", env=_env(max_running="1", at_cap="queue", demo_pace="0.2")
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            blocker = await create(client, initial_user_msg="blocker")
            queued = {}
            for name, priority in [("low", 2), ("urgent-a", 9), ("urgent-b", 9), ("normal", 5)]:
                response = await client.post(
                    "/api/conversations", json={"initial_user_msg": name, "priority": priority}
                )
                body = response.json()
                assert body["conversation_status"] == "QUEUED"
                queued[name] = body["conversation_id"]
            positions = {
                name: (await client.get(f"/api/conversations/{cid}")).json()["queue_position"]
                for name, cid in queued.items()
            }
            assert positions == {"urgent-a": 1, "urgent-b": 2, "normal": 3, "low": 4}
            await follow(server, blocker)
            started_at = {}
            for name, cid in queued.items():
                events = await follow(server, cid)
                assert agent_state(events[-1]) == "finished"
                reasons = [e["extras"]["reason"] for e in events if agent_state(e) == "loading"]
                assert any(reason.startswith("queued: position") for reason in reasons)
                started_at[name] = next(e["timestamp"] for e in events if _running(e))
            assert sorted(started_at, key=started_at.__getitem__) == [
                "urgent-a",
                "urgent-b",
                "normal",
                "low",
            ]
    finally:
        server.stop()


async def test_concurrent_creations_never_exceed_the_cap(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "s", env=_env(max_running="3", at_cap="queue", demo_pace="2")
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            responses = await asyncio.gather(
                *(
                    client.post("/api/conversations", json={"initial_user_msg": f"n{i}"})
                    for i in range(12)
                )
            )
            assert {response.status_code for response in responses} == {201}
            statuses = sorted(response.json()["conversation_status"] for response in responses)
            assert statuses.count("QUEUED") == 9
            sessions = (await client.get("/api/sessions")).json()
            assert (sessions["running_count"], sessions["queued_count"]) == (3, 9)
            assert [entry["position"] for entry in sessions["queued"]] == list(range(1, 10))
    finally:
        server.stop()


async def test_the_per_user_cap(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "s",
        env={
            **_env(max_running="10", max_running_per_user="1", demo_pace="1"),
            **ACCEPT_LOCAL_WITH_KEYS,
        },
    )
    alice_key, bob_key = make_key(server, "alice"), make_key(server, "bob")
    server.start()
    try:
        async with (
            httpx.AsyncClient(
                base_url=server.url, headers={"X-Session-API-Key": alice_key}
            ) as alice,
            httpx.AsyncClient(base_url=server.url, headers={"X-Session-API-Key": bob_key}) as bob,
        ):
            first = (await alice.post("/api/conversations", json={"initial_user_msg": "a1"})).json()
            second = (
                await alice.post("/api/conversations", json={"initial_user_msg": "a2"})
            ).json()
            theirs = (await bob.post("/api/conversations", json={"initial_user_msg": "b1"})).json()
            assert first["conversation_status"] == "STARTING"
            assert second["conversation_status"] == "QUEUED"
            assert theirs["conversation_status"] == "STARTING"
            sessions = (await bob.get("/api/sessions")).json()
            assert sessions["running"] == [
                theirs["conversation_id"]
            ]  # alice's are counted, not named
            assert sessions["running_count"] == 2
    finally:
        server.stop()


async def test_idle_runs_are_closed(tmp_path: Path) -> None:
    model = ScriptedModel([say("Are you there?")])
    async with serving(model) as base_url:
        server = RunningServer(
            tmp_path / "s", env=_env(llm_base_url=base_url, idle_close_delay="1")
        ).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                conversation_id = await create(client, initial_user_msg="hi", agent="llm")
                events = await follow(server, conversation_id)
                assert agent_state(events[-2]) == "awaiting_user_input"
                assert agent_state(events[-1]) == "stopped"
                assert events[-1]["extras"]["reason"] == "closed after 1 seconds idle"
                assert (await client.get("/api/sessions")).json()["running_count"] == 0
        finally:
            server.stop()


async def test_stopping_a_queued_conversation(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "s", env=_env(max_running="1", demo_pace="0.3")).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            blocker = await create(client, initial_user_msg="blocker")
            waiting = await create(client, initial_user_msg="waiting")
            assert (await client.get(f"/api/conversations/{waiting}")).json()["queue_position"] == 1
            stopped = await client.post(f"/api/conversations/{waiting}/stop")
            assert stopped.json()["conversation_status"] == "STOPPED"
            events = await follow(server, waiting, until=lambda e: agent_state(e) == "stopped")
            assert events[-1]["extras"]["reason"] == "stopped by the local user while queued"
            assert events[-1]["extras"]["conversation_status"] == "STOPPED"
            info = (await client.get(f"/api/conversations/{waiting}")).json()
            assert (info["status"], info["agent_state"], info["queue_position"]) == (
                "STOPPED",
                "stopped",
                None,
            )
            assert (await client.get("/api/sessions")).json()["queued"] == []
            await follow(server, blocker)
            sessions = (await client.get("/api/sessions")).json()
            assert sessions["running_count"] == 0  # the stopped one did not start
    finally:
        server.stop()
