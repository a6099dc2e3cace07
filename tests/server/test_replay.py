"""Replay as OpenHands means it: a recording's user and agent actions executed again in
a fresh sandbox (local and Docker), the new observations streamed as they happen, the
recorded one kept beside each that differs, and a summary of how many steps matched.
Copy-only import stays available as ``replay_mode: view``."""

from __future__ import annotations

import os
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import pytest_asyncio

from tests.server.clients import agent_state, create, follow
from tests.server.running import ACCEPT_LOCAL_WITH_KEYS, RunningServer
from tests.server.test_auth import make_key
from tests.server.test_trajectory import export

GREETING = Path(__file__).resolve().parents[1] / "fixtures" / "replays" / "greeting.json"
IMAGE = os.environ.get("THREADLINE_TEST_SANDBOX_IMAGE", "threadline-sandbox:test")
Event = dict[str, Any]


def _docker_ready() -> None:
    probe = subprocess.run(["docker", "image", "inspect", IMAGE], capture_output=True, text=True)
    if probe.returncode != 0:
        raise RuntimeError(f"the Docker engine or {IMAGE} is missing (scripts/services)")


@pytest.fixture(scope="module", params=["local", "docker"])
def replay_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningServer]:
    env = {"THREADLINE_DEMO_PACE": "0"}
    if request.param == "docker":
        _docker_ready()
        env |= {"THREADLINE_RUNTIME": "docker", "THREADLINE_DOCKER_IMAGE": IMAGE}
    running = RunningServer(tmp_path_factory.mktemp(f"replay-{request.param}"), env=env).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def http(replay_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=replay_server.url, timeout=30) as client:
        yield client


def _replayed(events: list[Event]) -> dict[int, Event]:
    """The new observations, by the recorded action they answer."""
    return {
        event["extras"]["replay"]["recorded_action"]: event
        for event in events
        if "recorded_action" in event.get("extras", {}).get("replay", {})
    }


async def test_replay_json_re_executes_the_recording(
    http: httpx.AsyncClient, replay_server: RunningServer
) -> None:
    conversation_id = await create(http, replay_json=GREETING.read_text(), title="greeting")
    events = await follow(replay_server, conversation_id, time_limit=90)
    assert agent_state(events[-1]) == "finished", events[-3:]
    acted = [event for event in events if "action" in event]
    # The user's message and the agent's work, in order, each naming its event in the
    # recording's conversation (the recorded ids 0-8 and 10, renumbered gaplessly); the
    # system prompt and the environment's events are not re-executed; no recorded
    # timeout.
    assert [(e["action"], e["source"], e["original_id"]) for e in acted] == [
        ("message", "user", 0),
        ("run", "agent", 3),
        ("write", "agent", 5),
        ("run", "agent", 7),
        ("finish", "agent", 9),
    ]
    assert "timeout" not in acted[1]
    outcomes = _replayed(events)
    failing, written, shown = outcomes[3], outcomes[5], outcomes[7]
    # A command's real outcome, here as recorded: same output, same exit code.
    assert failing["extras"]["metadata"]["exit_code"] == 3
    assert failing["extras"]["replay"] == {
        "recorded_action": 3, "matched": True, "recorded_observation": 4,
    }  # fmt: skip
    assert written["extras"]["replay"]["matched"] is True
    # It differs: the recorded observation is kept beside the new one.
    assert shown["content"].strip() == "hi there"
    assert shown["extras"]["replay"]["matched"] is False
    recorded = shown["extras"]["replay"]["recorded"]
    assert recorded["content"] == "hi there, from the machine it was recorded on"
    assert recorded["original_id"] == 8
    summary = next(e for e in events if e.get("observation") == "success")
    assert summary["content"] == (
        f"replay finished: 2 of 3 steps matched the recording; 1 differed (events {shown['id']})"
    )
    info = (await http.get(f"/api/conversations/{conversation_id}")).json()
    assert info["trigger"] == "replay"
    replay = info["replay"]
    assert (replay["mode"], replay["complete"], replay["steps"], replay["matched"]) == (
        "execute", True, 3, 2,
    )  # fmt: skip
    # The recording is a conversation of its own, kept as recorded.
    recording = (await http.get(f"/api/conversations/{replay['source']}")).json()
    assert recording["trigger"] == "import"
    assert len(await export(http, replay["source"])) == len(orjson.loads(GREETING.read_bytes()))


async def test_an_earlier_conversation_re_executes_and_a_message_continues_it(
    http: httpx.AsyncClient, replay_server: RunningServer
) -> None:
    source = await create(http, initial_user_msg="inspect this workspace")
    assert agent_state((await follow(replay_server, source, time_limit=90))[-1]) == "finished"
    answer = await http.post(f"/api/conversations/{source}/rerun", json={"replay_mode": "execute"})
    assert answer.status_code == 201, answer.text
    replay_id = answer.json()["conversation_id"]
    assert answer.json()["recording_id"] == source
    events = await follow(replay_server, replay_id, time_limit=90)
    assert agent_state(events[-1]) == "finished"
    original = [e for e in await export(http, source) if "action" in e]
    again = [e for e in events if "action" in e]
    assert [(e["action"], e["args"]) for e in again] == [(e["action"], e["args"]) for e in original]
    outcomes = _replayed(events)
    # `pwd && ls -la` names another workspace; the other steps reproduce.
    inspect = next(e for e in original if e["args"].get("command") == "pwd && ls -la")
    assert outcomes[inspect["id"]]["extras"]["replay"]["matched"] is False
    info = (await http.get(f"/api/conversations/{replay_id}")).json()["replay"]
    assert info["complete"]
    assert 0 < info["matched"] < info["steps"]
    # Once replayed, it is an ordinary conversation: a message goes to its agent.
    posted = await http.post(f"/api/conversations/{replay_id}/message", json={"message": "more?"})
    after = await follow(replay_server, replay_id, after=posted.json()["event_id"], time_limit=60)
    assert agent_state(after[-1]) == "finished"
    assert not any("replay" in e.get("extras", {}) for e in after)


async def test_view_copies_without_running(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    before = len((await client.get("/api/conversations")).json()["results"])
    viewed = await create(client, replay_json=GREETING.read_text(), replay_mode="view")
    info = (await client.get(f"/api/conversations/{viewed}")).json()
    assert (info["status"], info["replay"]) == ("STOPPED", None)
    assert len(await export(client, viewed)) == 10
    # The import endpoint copies by default, and replays when asked.
    copied = await client.post("/api/conversations/import", content=GREETING.read_bytes())
    assert copied.json()["events"] == 10
    replayed = await client.post(
        "/api/conversations/import",
        content=GREETING.read_bytes(),
        params={"replay_mode": "execute", "conversation_id": "imported-replay"},
    )
    assert replayed.status_code == 201, replayed.text
    assert replayed.json()["conversation_id"] == "imported-replay"
    assert agent_state((await follow(server, "imported-replay"))[-1]) == "finished"
    listed = (await client.get("/api/conversations")).json()["results"]
    assert len(listed) == before + 4  # the view, the copy, the replay and its recording


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"replay_json": "[]", "replay_mode": "again"}, "replay_mode"),
        ({"replay_mode": "execute"}, "replay_mode"),
        ({"replay_json": "[1]"}, "replay_json[0]"),
        ({"replay_json": "[]", "initial_user_msg": "hi"}, "initial_user_msg"),
    ],
)
async def test_bad_replays_are_400_and_write_nothing(
    client: httpx.AsyncClient, body: dict[str, str], field: str
) -> None:
    before = (await client.get("/api/conversations")).json()["results"]
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field
    assert (await client.get("/api/conversations")).json()["results"] == before
    refused = await client.post(
        "/api/conversations/import", content=b"[]", params={"replay_mode": "rerun"}
    )
    assert (refused.status_code, refused.json()["field"]) == (400, "replay_mode")


async def test_replays_stay_with_their_owner_and_the_operators_rules(tmp_path: Path) -> None:
    """Another user's conversation cannot be re-run, nor their replay controlled (404);
    with keys on and the local runtime not accepted, no replay is created (403)."""
    server = RunningServer(tmp_path / "server", env={"THREADLINE_DEMO_PACE": "0"})
    keys = [make_key(server, user) for user in ("alice", "bob")]
    server.env.update(ACCEPT_LOCAL_WITH_KEYS)
    server.start()
    try:
        alice, bob = (
            httpx.AsyncClient(base_url=server.url, timeout=20, headers={"X-Session-API-Key": k})
            for k in keys
        )
        async with alice, bob:
            mine = await alice.post("/api/conversations/import", content=GREETING.read_bytes())
            source = mine.json()["conversation_id"]
            assert (await bob.post(f"/api/conversations/{source}/rerun")).status_code == 404
            async with alice.stream(
                "GET", f"/api/conversations/{source}/events/stream", params={"replay": "1"}
            ) as stream:
                lines = stream.aiter_lines()
                started = await anext(line async for line in lines if line.startswith("data:"))
                replay_id = orjson.loads(started.removeprefix("data:"))["replay_id"]
                control = {"command": "pause"}
                path = f"/api/conversations/{source}/replay/{replay_id}"
                assert (await bob.post(path, json=control)).status_code == 404
                assert (await alice.post(path, json=control)).json()["state"] == "paused"
        server.stop()
        del server.env["THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS"]
        server.start()
        async with httpx.AsyncClient(
            base_url=server.url, timeout=20, headers={"X-Session-API-Key": keys[0]}
        ) as alice:
            before = (await alice.get("/api/conversations")).json()["results"]
            refused = await alice.post(f"/api/conversations/{source}/rerun")
            assert refused.status_code == 403, refused.text
            imported = await alice.post(
                "/api/conversations/import",
                content=GREETING.read_bytes(),
                params={"replay_mode": "execute"},
            )
            assert imported.status_code == 403
            assert (await alice.get("/api/conversations")).json()["results"] == before
    finally:
        server.stop()
