"""Pause, resume, stop, new instructions, control flags and timeouts, on a real server."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
import socketio

from tests.fakes.model_server import ScriptedModel, say, serving, tool
from tests.server.clients import Event, agent_state, create, follow, ids
from tests.server.running import RunningServer

PACED = {"THREADLINE_DEMO_PACE": "0.4"}


@pytest.fixture(scope="module")
def paced(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A demo agent slow enough to be caught mid-run."""
    running = RunningServer(tmp_path_factory.mktemp("paced"), env=PACED).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def http(paced: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=paced.url, timeout=30) as client:
        yield client


def states(events: list[Event]) -> list[tuple[str | None, str]]:
    return [(agent_state(e), e["extras"].get("reason", "")) for e in events if agent_state(e)]


def actions_after(events: list[Event], event_id: int) -> list[Event]:
    return [e for e in events if e["id"] > event_id and "action" in e and e["source"] == "agent"]


async def test_pause_and_resume_mid_run(http: httpx.AsyncClient, paced: RunningServer) -> None:
    conversation_id = await create(http, initial_user_msg="pause me")
    before = await follow(paced, conversation_id, until=lambda e: e.get("action") == "run")
    paused = await http.post(f"/api/conversations/{conversation_id}/pause")
    assert paused.status_code == 200
    assert paused.json()["agent_state"] == "paused"
    upto = await follow(
        paced, conversation_id, after=before[-1]["id"], until=lambda e: agent_state(e) == "paused"
    )
    request = next(e for e in upto if e.get("action") == "change_agent_state")
    assert request["source"] == "user"
    assert request["args"]["agent_state"] == "paused"
    assert request["args"]["requested_by"] == "the local user"
    info = (await http.get(f"/api/conversations/{conversation_id}")).json()
    assert info["agent_state"] == "paused"
    paused_at = upto[-1]["id"]
    assert (await http.post(f"/api/conversations/{conversation_id}/resume")).status_code == 200
    rest = await follow(paced, conversation_id, after=paused_at)
    assert agent_state(rest[-1]) == "finished"
    assert states(rest)[0][0] == "running"
    everything = await follow(paced, conversation_id)
    # Between the pause and the resume, at most the step already under way lands.
    resumed_at = next(
        e["id"] for e in everything if e["id"] > paused_at and agent_state(e) == "running"
    )
    assert len([e for e in actions_after(everything, paused_at) if e["id"] < resumed_at]) <= 1


async def test_stop_mid_run(http: httpx.AsyncClient, paced: RunningServer) -> None:
    conversation_id = await create(http, initial_user_msg="stop me")
    await follow(paced, conversation_id, until=lambda e: e.get("action") == "run")
    stopped = await http.post(f"/api/conversations/{conversation_id}/stop")
    assert stopped.json()["conversation_status"] == "STOPPED"
    events = await follow(paced, conversation_id)
    assert states(events)[-1] == ("stopped", "stopped by the local user")
    assert not any(e.get("action") == "finish" for e in events)
    assert (await http.post(f"/api/conversations/{conversation_id}/pause")).status_code == 409


async def test_a_new_instruction_reaches_the_running_agent(
    http: httpx.AsyncClient, paced: RunningServer
) -> None:
    conversation_id = await create(http, initial_user_msg="first task")
    await follow(paced, conversation_id, until=lambda e: e.get("action") == "task_tracking")
    await http.post(
        f"/api/conversations/{conversation_id}/message", json={"message": "also check disk"}
    )
    events = await follow(paced, conversation_id)
    replies = [
        e["args"]["content"]
        for e in events
        if e.get("action") == "message" and e["source"] == "agent"
    ]
    assert any("also check disk" in reply for reply in replies)
    assert agent_state(events[-1]) == "finished"


async def test_control_over_socketio_is_logged(
    http: httpx.AsyncClient, paced: RunningServer
) -> None:
    conversation_id = await create(http, initial_user_msg="socket control")
    await follow(paced, conversation_id, until=lambda e: e.get("action") == "run")
    client = socketio.AsyncClient(reconnection=False)
    await client.connect(
        f"{paced.url}?conversation_id={conversation_id}&latest_event_id=999999",
        transports=["websocket"],
        wait_timeout=10,
    )
    try:
        for state in ("paused", "running"):
            ack = await client.call(
                "oh_user_action",
                {"action": "change_agent_state", "args": {"agent_state": state}},
                timeout=10,
            )
            assert ack["status"] == "ok"
        bad = await client.call(
            "oh_user_action",
            {"action": "change_agent_state", "args": {"agent_state": "finished"}},
            timeout=10,
        )
        assert bad["status"] == "error"
    finally:
        await client.disconnect()
    events = await follow(paced, conversation_id)
    requests = [e["args"] for e in events if e.get("action") == "change_agent_state"]
    assert [(r["agent_state"], "socketio" in r["thought"]) for r in requests] == [
        ("paused", True),
        ("running", True),
    ]
    assert agent_state(events[-1]) == "finished"


async def test_the_iteration_flag_trips_and_a_message_raises_it(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "server", env={"THREADLINE_DEMO_PACE": "0"}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            conversation_id = await create(client, initial_user_msg="count", max_iterations=5)
            events = await follow(
                server, conversation_id, until=lambda e: agent_state(e) == "error"
            )
            tripped = events[-1]["extras"]
            assert "iteration flag tripped: 5 of 5" in tripped["reason"]
            assert (tripped["iteration"], tripped["max_iterations"]) == (5, 5)
            info = (await client.get(f"/api/conversations/{conversation_id}")).json()
            assert (info["agent_state"], info["iteration"], info["max_iterations"]) == (
                "error",
                5,
                5,
            )
            last = events[-1]["id"]
            for nudge in ("message", "resume", "message", "resume"):
                if nudge == "message":
                    await client.post(
                        f"/api/conversations/{conversation_id}/message", json={"message": "go on"}
                    )
                else:
                    await client.post(f"/api/conversations/{conversation_id}/resume")
                more = await follow(
                    server,
                    conversation_id,
                    after=last,
                    until=lambda e: agent_state(e) in ("error", "finished"),
                )
                last = more[-1]["id"]
                if agent_state(more[-1]) == "finished":
                    break
                assert more[-1]["extras"]["max_iterations"] > 5
            assert agent_state(more[-1]) == "finished"
            info = (await client.get(f"/api/conversations/{conversation_id}")).json()
            assert info["status"] == "STOPPED"
            assert info["iteration"] <= info["max_iterations"]
            everything = await follow(server, conversation_id)
            assert ids(everything) == list(range(len(everything)))
    finally:
        server.stop()


async def test_the_hard_timeout_ends_a_run(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "server", env={"THREADLINE_DEMO_PACE": "0.5", "THREADLINE_HARD_TIMEOUT": "1"}
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            conversation_id = await create(client, initial_user_msg="too slow")
            events = await follow(server, conversation_id)
            assert states(events)[-1] == ("error", "the hard timeout of 1 seconds was reached")
            info = (await client.get(f"/api/conversations/{conversation_id}")).json()
            assert info["status"] == "ERROR"
    finally:
        server.stop()


async def test_the_sandbox_start_timeout(
    tmp_path: Path, bare_repository_with_slow_setup: Path
) -> None:
    server = RunningServer(
        tmp_path / "server", env={"THREADLINE_SANDBOX_START_TIMEOUT": "1"}
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            conversation_id = await create(
                client, initial_user_msg="start", repository=str(bare_repository_with_slow_setup)
            )
            events = await follow(server, conversation_id)
            progress = [reason for state, reason in states(events) if state == "loading"]
            assert any(reason.startswith("cloning") for reason in progress)
            assert any("setup script" in reason for reason in progress)
            assert states(events)[-1] == ("error", "the sandbox did not start within 1 seconds")
    finally:
        server.stop()


# -- the LLM agent ---------------------------------------------------------------------


LLM_ENV = {"THREADLINE_LLM_INPUT_COST": "1.0", "THREADLINE_LLM_OUTPUT_COST": "2.0"}


async def _llm_server(tmp_path: Path, base_url: str, **env: str) -> RunningServer:
    return RunningServer(
        tmp_path / "server", env={**LLM_ENV, "THREADLINE_LLM_BASE_URL": base_url, **env}
    ).start()


async def test_llm_agent_end_to_end(tmp_path: Path) -> None:
    model = ScriptedModel(
        [
            tool(
                "task_tracker",
                command="plan",
                task_list=[{"id": "1", "title": "Greet", "status": "in_progress"}],
            ),
            tool("execute_bash", command="echo hello from the model > hello.txt && cat hello.txt"),
            tool(
                "str_replace_editor",
                command="str_replace",
                path="hello.txt",
                old_str="hello",
                new_str="goodbye",
            ),
            tool("think", thought="that should do"),
            tool("no_such_tool"),
            tool(
                "task_tracker",
                command="plan",
                task_list=[{"id": "1", "title": "Greet", "status": "done"}],
            ),
            tool("finish", message="All greeted."),
        ]
    )
    async with serving(model) as base_url:
        server = await _llm_server(tmp_path, base_url)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                conversation_id = await create(client, initial_user_msg="say hello", agent="llm")
                events = await follow(server, conversation_id)
                assert agent_state(events[-1]) == "finished"
                runs = [e for e in events if e.get("observation") == "run"]
                assert runs[0]["content"].strip() == "hello from the model"
                assert runs[0]["tool_call_metadata"]["function_name"] == "execute_bash"
                edits = [e for e in events if e.get("observation") == "edit"]
                assert "+goodbye" in edits[0]["extras"]["diff"]
                errors = [e for e in events if e.get("observation") == "error"]
                assert "no tool 'no_such_tool'" in errors[0]["content"]
                actions = [e for e in events if "action" in e and e["source"] == "agent"]
                assert all("llm_metrics" in e for e in actions)
                assert actions[-1]["llm_metrics"]["accumulated_cost"] == pytest.approx(7 * 0.0012)
                plan = (await client.get(f"/api/conversations/{conversation_id}/plan")).json()
                assert plan["tasks"] == [
                    {"id": "1", "title": "Greet", "status": "done", "notes": ""}
                ]
                info = (await client.get(f"/api/conversations/{conversation_id}")).json()
                assert info["accumulated_cost"] == pytest.approx(7 * 0.0012)
                assert info["prompt_tokens"] == 7000
            # The model was told what its tool calls did.
            tool_answers = [
                m["content"] for m in model.requests[2]["messages"] if m["role"] == "tool"
            ]
            assert any("hello from the model" in answer for answer in tool_answers)
        finally:
            server.stop()


async def test_the_budget_flag_trips_and_resume_raises_it(tmp_path: Path) -> None:
    model = ScriptedModel(
        [*(tool("think", thought=f"step {n}") for n in range(7)), tool("finish", message="ok")]
    )
    async with serving(model) as base_url:
        server = await _llm_server(tmp_path, base_url, THREADLINE_LLM_CURRENCY="EUR")
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                conversation_id = await create(
                    client, initial_user_msg="spend", agent="llm", max_budget_per_task=0.005
                )
                events = await follow(
                    server, conversation_id, until=lambda e: agent_state(e) in ("error", "finished")
                )
                tripped = events[-1]["extras"]
                assert agent_state(events[-1]) == "error"
                assert "budget flag tripped" in tripped["reason"]
                # Each call costs 1000 * 1.0 / 1e6 + 100 * 2.0 / 1e6 = 0.0012, exactly: a
                # sum of floats would say 0.0048000000000000004 after four.
                assert tripped["accumulated_cost"] == 0.006
                assert tripped["reason"].startswith(
                    "the budget flag tripped: 0.006 EUR spent of 0.005 EUR;"
                )
                calls_when_tripped = len(model.requests)
                response = await client.get(f"/api/conversations/{conversation_id}")
                assert '"accumulated_cost":0.006,' in response.text
                info = response.json()
                assert (info["max_budget_per_task"], info["currency"]) == (0.005, "EUR")
                assert len(model.requests) == calls_when_tripped  # no spending while held
                await client.post(f"/api/conversations/{conversation_id}/resume")
                rest = await follow(server, conversation_id, after=events[-1]["id"])
                assert agent_state(rest[-1]) == "finished"
                raised = next(e for e in rest if agent_state(e) == "running")
                assert raised["extras"]["max_budget_per_task"] == 0.01
                final = (await client.get(f"/api/conversations/{conversation_id}")).json()
                assert final["accumulated_cost"] == 0.0096  # 8 calls
        finally:
            server.stop()


async def test_an_llm_question_waits_for_the_answer(tmp_path: Path) -> None:
    model = ScriptedModel([say("Which file?"), tool("finish", message="thanks")])
    async with serving(model) as base_url:
        server = await _llm_server(tmp_path, base_url)
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
                conversation_id = await create(client, initial_user_msg="edit a file", agent="llm")
                asked = await follow(
                    server, conversation_id, until=lambda e: agent_state(e) == "awaiting_user_input"
                )
                question = [
                    e for e in asked if e.get("action") == "message" and e["source"] == "agent"
                ]
                assert question[-1]["args"]["content"] == "Which file?"
                assert question[-1]["args"]["wait_for_response"] is True
                await client.post(
                    f"/api/conversations/{conversation_id}/message", json={"message": "README"}
                )
                rest = await follow(server, conversation_id, after=asked[-1]["id"])
                assert agent_state(rest[-1]) == "finished"
                last_request = model.requests[-1]["messages"]
                assert last_request[-1] == {"role": "user", "content": "README"}
        finally:
            server.stop()


def test_the_llm_agent_needs_a_model(server: RunningServer) -> None:
    response = httpx.post(
        f"{server.url}/api/conversations", json={"agent": "llm", "initial_user_msg": "x"}
    )
    assert response.status_code == 400
    assert "THREADLINE_LLM_BASE_URL" in response.json()["message"]
