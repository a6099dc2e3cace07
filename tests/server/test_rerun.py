"""Deterministic re-run: an LLM-agent conversation recorded against the scripted model
server reproduces with no model server at all — through ``POST .../rerun`` on the
server that recorded it (its model server gone), and through an import with
``replay_mode=recorded`` on a server that has no model configured — and a re-run that
leaves the recording stops with an event saying where and why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import orjson

from tests.fakes.model_server import ScriptedModel, say, serving, tool
from tests.server.clients import agent_state, create, follow
from tests.server.running import RunningServer
from tests.server.test_trajectory import export

Event = dict[str, Any]
SCRIPT = [
    tool("execute_bash", command="echo one && printf 'two\\n' > two.txt"),
    say("Whose name goes in the greeting?"),
    tool("str_replace_editor", command="create", path="hello.txt", file_text="hello Ada\n"),
    tool("execute_bash", command="cat two.txt hello.txt"),
    tool("finish", message="greeted"),
]
UNSTABLE = [
    tool("execute_bash", command="cat /proc/sys/kernel/random/uuid"),
    tool("finish", message="done"),
]


def _work(events: list[Event]) -> list[tuple[str, str, Any]]:
    """What happened, without ids and times: each visible action and observation."""
    kept = []
    for event in events:
        if event.get("observation") in ("agent_state_changed", "success"):
            continue
        if "action" in event:
            kept.append(("action", event["action"], event["args"]))
        else:
            kept.append(("observation", event["observation"], event["content"]))
    return kept


async def _record(server: RunningServer, client: httpx.AsyncClient) -> tuple[str, str]:
    greeted = await create(client, initial_user_msg="write a greeting", agent="llm")
    asked = await follow(server, greeted, until=lambda e: agent_state(e) == "awaiting_user_input")
    answer = await client.post(f"/api/conversations/{greeted}/message", json={"message": "Ada"})
    assert answer.status_code == 200
    events = await follow(server, greeted, after=asked[-1]["id"])
    assert agent_state(events[-1]) == "finished", events[-3:]
    unstable = await create(client, initial_user_msg="make a uuid", agent="llm")
    assert agent_state((await follow(server, unstable))[-1]) == "finished"
    return greeted, unstable


async def test_an_llm_conversation_reproduces_without_its_model(tmp_path: Path) -> None:
    recorder = RunningServer(tmp_path / "recorder")
    bare = RunningServer(tmp_path / "bare")  # no model configured at all
    try:
        async with serving(ScriptedModel(SCRIPT, alternatives={"uuid": UNSTABLE})) as base_url:
            recorder.env["THREADLINE_LLM_BASE_URL"] = base_url
            async with httpx.AsyncClient(base_url=recorder.start().url, timeout=30) as client:
                greeted, unstable = await _record(recorder, client)
        # The model server is gone from here on.
        async with httpx.AsyncClient(base_url=recorder.url, timeout=30) as client:
            recorded = await _rerun_here(recorder, client, greeted, unstable)
            expected = _work(await export(client, greeted))
        async with httpx.AsyncClient(base_url=bare.start().url, timeout=30) as elsewhere:
            imported = await elsewhere.post(
                "/api/conversations/import",
                content=b"\n".join(orjson.dumps(event) for event in recorded),
                params={"replay_mode": "recorded", "format": "jsonl"},
            )
            assert imported.status_code == 201, imported.text
            copy = imported.json()["conversation_id"]
            events = await follow(bare, copy, time_limit=60)
            assert agent_state(events[-1]) == "finished", events[-4:]
            assert _work(await export(elsewhere, copy)) == expected
    finally:
        for server in (recorder, bare):
            if server.process is not None:
                server.stop()


async def _rerun_here(
    server: RunningServer, client: httpx.AsyncClient, greeted: str, unstable: str
) -> list[Event]:
    recorded = await export(client, greeted, include_hidden="true")
    exchanges = [e for e in recorded if e.get("observation") == "model_exchange"]
    assert [e["extras"]["call"] for e in exchanges] == [0, 1, 2, 3, 4]
    assert all(e["extras"]["hidden"] for e in exchanges)
    assert exchanges[0]["extras"]["request_digest"].startswith("sha256:")
    assert await export(client, greeted) == [
        e for e in recorded if e.get("observation") != "model_exchange"
    ]

    rerun = await client.post(f"/api/conversations/{greeted}/rerun")
    assert rerun.status_code == 201, rerun.text
    again = rerun.json()["conversation_id"]
    events = await follow(server, again, time_limit=60)
    assert agent_state(events[-1]) == "finished", events[-4:]
    assert _work(await export(client, again)) == _work(await export(client, greeted))
    info = (await client.get(f"/api/conversations/{again}")).json()
    assert info["replay"]["mode"] == "recorded"
    assert (info["replay"]["answered"], info["replay"]["calls"]) == (5, 5)
    assert events[-2]["content"] == (
        "re-run finished: 5 of 5 model calls answered from the recording"
    )

    diverged = await client.post(f"/api/conversations/{unstable}/rerun")
    events = await follow(server, diverged.json()["conversation_id"], time_limit=60)
    assert agent_state(events[-1]) == "error"
    error = next(e for e in events if e.get("observation") == "error")
    assert error["extras"]["error_id"] == "RERUN_DIVERGED"
    assert error["extras"]["call"] == 1
    uuid_output = next(e for e in events if e.get("observation") == "run")
    assert error["extras"]["after_event"] == uuid_output["id"]
    assert (
        "model call 1 is not in the recording: message 3 of the chat differs" in (error["content"])
    )
    assert events[-1]["extras"]["reason"] == error["content"]
    return recorded
