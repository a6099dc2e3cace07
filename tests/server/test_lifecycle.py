"""A run's life has one owner: state changes land in the log and the record together,
stop is idempotent, the slot is always released, shutdown admits nothing, and nothing a
user sends falls between two runs."""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import signal
import subprocess
from pathlib import Path
from typing import Any

import httpx
import pytest

from events import AgentStateChangedObservation
from events.observations import AgentStateChangedExtras
from server.controller import SETTLE_RETRY_MAX
from storage import ConversationPatch, NewConversation
from storage.sqlite import SqliteStorage
from tests.fakes.model_server import ScriptedModel, serving, tool
from tests.server.clients import Event, agent_state, create, follow
from tests.server.running import RunningServer

PACED = {"THREADLINE_DEMO_PACE": "2"}


def states(events: list[Event]) -> list[str]:
    return [state for event in events if (state := agent_state(event)) is not None]


async def wait_for(check: Any, seconds: float = 15.0) -> None:
    """Poll ``check`` (it asks the server) until it holds; TimeoutError after ``seconds``."""
    async with asyncio.timeout(seconds):
        while True:
            if await check():
                return
            await asyncio.sleep(0.1)


def processes_named(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


async def test_two_stops_are_one_and_leave_nothing_running(tmp_path: Path) -> None:
    """The second stop used to cancel the first one's cleanup: both answered 500 and a
    background process of the run survived."""
    server = RunningServer(tmp_path / "server", env=PACED).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as client:
            conversation_id = await create(client, initial_user_msg="stop me twice")
            await follow(server, conversation_id, until=lambda e: agent_state(e) == "running")
            # A command that ignores SIGTERM: killing it takes the grace period, so the
            # later stops arrive while the first one is still cleaning up.
            marker = f"sleep {random.randrange(10_000, 99_999)}"
            posted = await client.post(
                f"/api/conversations/{conversation_id}/events",
                json={"action": "run", "args": {"command": f"trap '' TERM; {marker}; :"}},
            )
            assert posted.status_code == 200

            async def started() -> bool:
                return bool(processes_named(marker))

            await wait_for(started)

            async def stop(delay: float) -> httpx.Response:
                await asyncio.sleep(delay)
                return await client.post(f"/api/conversations/{conversation_id}/stop")

            answers = await asyncio.gather(stop(0), stop(0.3), stop(0.3))
            assert [answer.status_code for answer in answers] == [200, 200, 200]
            assert processes_named(marker) == []
            info = (await client.get(f"/api/conversations/{conversation_id}")).json()
            assert (info["status"], info["agent_state"]) == ("STOPPED", "stopped")
            events = await follow(server, conversation_id)
            assert states(events).count("stopped") == 1
            sessions = (await client.get("/api/sessions")).json()
            assert sessions["running_count"] == 0
    finally:
        server.stop()


async def test_deletes_racing_starts_leak_no_slot(tmp_path: Path) -> None:
    server = RunningServer(
        tmp_path / "server", env={"THREADLINE_DEMO_PACE": "0.5", "THREADLINE_MAX_RUNNING": "100"}
    ).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
            ids = [await create(client, initial_user_msg=f"race {n}") for n in range(40)]
            for conversation_id in ids:
                await follow(server, conversation_id)  # finished: a start begins a new run

            async def race(conversation_id: str) -> None:
                url = f"/api/conversations/{conversation_id}"
                start = client.post(f"{url}/start")
                delete = client.delete(url)
                answers = await asyncio.gather(start, delete)
                assert all(answer.status_code in (200, 404) for answer in answers), [
                    (answer.status_code, answer.text) for answer in answers
                ]

            await asyncio.gather(*(race(conversation_id) for conversation_id in ids))

            async def nothing_runs() -> bool:
                sessions = (await client.get("/api/sessions")).json()
                return sessions["running_count"] == 0 and sessions["queued_count"] == 0

            await wait_for(nothing_runs)
    finally:
        server.stop()


async def test_a_message_right_after_start_is_answered(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, initial_user_msg="first")
    events = await follow(server, conversation_id)
    for round_number in range(3):
        question = f"question number {round_number}"
        started = await client.post(f"/api/conversations/{conversation_id}/start")
        assert started.status_code == 200
        sent = await client.post(
            f"/api/conversations/{conversation_id}/message", json={"message": question}
        )
        assert sent.status_code == 200

        def answered(event: Event, question: str = question) -> bool:
            return (
                event.get("action") == "message"
                and event["source"] == "agent"
                and question in event["args"]["content"]
            )

        events = await follow(server, conversation_id, after=events[-1]["id"], until=answered)
        assert answered(events[-1])
        events += await follow(server, conversation_id, after=events[-1]["id"])


async def test_a_message_sent_while_the_agent_finishes_is_answered(tmp_path: Path) -> None:
    """A message that reaches a run after the agent's last look used to be dropped when
    the run finished: nothing ever answered it."""
    model = ScriptedModel([tool("finish", message="done")])
    in_flight = asyncio.Event()
    model.holds[0] = in_flight
    async with serving(model) as base_url:
        server = RunningServer(tmp_path / "server", env={"THREADLINE_LLM_BASE_URL": base_url})
        server.start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
                conversation_id = await create(client, initial_user_msg="first", agent="llm")

                async def model_called() -> bool:
                    return bool(model.requests)

                await wait_for(model_called)
                sent = await client.post(
                    f"/api/conversations/{conversation_id}/message",
                    json={"message": "and one more thing"},
                )
                assert sent.status_code == 200
                in_flight.set()  # the model answers "finish" without having seen it

                async def asked_again() -> bool:
                    return any(
                        message["role"] == "user" and "one more thing" in str(message["content"])
                        for request in model.requests
                        for message in request["messages"]
                    )

                await wait_for(asked_again)
        finally:
            server.stop()


async def test_a_tiny_budget_never_blocks_the_server(tmp_path: Path) -> None:
    """Raising a limit far below the cost by its increment (a budget of 1e-12 once; now
    the smallest budget there is, a millionth, against a cost of 0.0012 a step) used to
    loop on the event loop."""
    model = ScriptedModel([*(tool("think", thought=f"step {n}") for n in range(3))])
    async with serving(model) as base_url:
        server = RunningServer(
            tmp_path / "server",
            env={
                "THREADLINE_LLM_BASE_URL": base_url,
                "THREADLINE_LLM_INPUT_COST": "1.0",
                "THREADLINE_LLM_OUTPUT_COST": "2.0",
            },
        ).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
                conversation_id = await create(
                    client, initial_user_msg="spend", agent="llm", max_budget_per_task=0.000001
                )
                events = await follow(
                    server, conversation_id, until=lambda e: agent_state(e) == "error"
                )
                resumed = await client.post(f"/api/conversations/{conversation_id}/resume")
                assert resumed.status_code == 200
                held_again = await follow(
                    server,
                    conversation_id,
                    after=events[-1]["id"],
                    until=lambda e: agent_state(e) == "error",
                )
                raised = held_again[-1]["extras"]["max_budget_per_task"]
                assert raised == 0.001201  # past the cost of 0.0012 in one step: 1,201 increments
                tiny = await client.post(
                    "/api/conversations", json={"agent": "llm", "max_budget_per_task": 1e-12}
                )
                assert tiny.status_code == 400
                assert tiny.json()["field"] == "max_budget_per_task"
                assert (await client.get("/api/health")).status_code == 200
        finally:
            server.stop()


async def test_shutdown_admits_nothing(tmp_path: Path) -> None:
    """SIGTERM stops the runs and ends there: queued conversations stay queued, and
    nothing that arrives during the drain starts a run."""
    server = RunningServer(tmp_path / "server", env={**PACED, "THREADLINE_MAX_RUNNING": "1"})
    server.start()
    async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
        running = await create(client, initial_user_msg="runs")
        queued = await create(client, initial_user_msg="waits")
        assert (await client.get(f"/api/conversations/{queued}")).json()["status"] == "QUEUED"
        statuses: list[int] = []

        async def keep_talking() -> None:
            while True:
                try:
                    answer = await client.post(
                        f"/api/conversations/{running}/message", json={"message": "still there?"}
                    )
                except httpx.TransportError:
                    return
                statuses.append(answer.status_code)
                await asyncio.sleep(0.01)

        talker = asyncio.create_task(keep_talking())
        await asyncio.sleep(0.3)
        assert server.process is not None
        server.process.send_signal(signal.SIGTERM)
        await asyncio.to_thread(server.process.wait, 20)
        await talker
    assert set(statuses) <= {200, 503}, statuses
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:
            info = (await client.get(f"/api/conversations/{queued}")).json()
            assert info["status"] in ("QUEUED", "STARTING", "RUNNING"), info
            events = await follow(server, queued, until=lambda e: agent_state(e) == "running")
            assert "stopped" not in states(events)
    finally:
        server.stop()
    assert "closed" not in server.log.read_text().lower()


async def test_recovery_repairs_a_log_that_ends_running(tmp_path: Path) -> None:
    """A record and a log that disagree (written by a version that wrote them in two
    transactions, killed between them) are repaired at the next start."""
    server = RunningServer(tmp_path / "server")
    store = await SqliteStorage.open(server.data_dir / "log")
    try:
        record = await store.create_conversation(NewConversation(title="torn"))
        running = AgentStateChangedExtras.model_validate(
            {"agent_state": "running", "reason": "", "conversation_status": "RUNNING"}
        )
        await store.append(
            record.id, AgentStateChangedObservation(source="environment", extras=running)
        )
        await store.update_conversation(
            record.id, ConversationPatch(status="STOPPED", agent_state="stopped")
        )
    finally:
        await store.close()
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=10) as client:

            async def repaired() -> bool:
                events = (await client.get(f"/api/conversations/{record.id}/events")).json()
                return states(events["events"])[-1:] == ["stopped"]

            await wait_for(repaired)
            info = (await client.get(f"/api/conversations/{record.id}")).json()
            assert (info["status"], info["agent_state"]) == ("STOPPED", "stopped")
    finally:
        server.stop()


@pytest.fixture
def small_disk(tmp_path: Path) -> Any:
    """A 24 MiB tmpfs for a data directory (root only), unmounted afterwards."""
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=24m", "tmpfs", str(mount_point)],
        capture_output=True,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {mounted.stderr.decode().strip()}")
    mount_point.chmod(0o755)
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], check=False)


def fill(directory: Path) -> Path:
    """Take every free byte of the file system ``directory`` is on."""
    filler = directory / "filler"
    descriptor = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 20, 4096, 1):
            with contextlib.suppress(OSError):
                while os.write(descriptor, b"\0" * size):
                    pass
    finally:
        os.close(descriptor)
    return filler


async def test_a_full_disk_answers_507_and_wedges_no_run(small_disk: Path) -> None:
    server = RunningServer(small_disk / "data", env={"THREADLINE_DEMO_PACE": "60"})
    server.log = small_disk.parent / "server.log"  # the log elsewhere: it must be readable
    server.start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
            conversation_id = await create(client, initial_user_msg="fill the disk under me")
            await follow(server, conversation_id, until=lambda e: agent_state(e) == "running")
            filler = fill(small_disk)
            big = {"action": "think", "args": {"thought": "x" * 400_000}}
            refusals = []
            for _ in range(60):  # until even small writes are refused
                answer = await client.post(f"/api/conversations/{conversation_id}/events", json=big)
                assert answer.status_code in (200, 507), answer.text
                if answer.status_code == 507:
                    refusals.append(answer)
                    small = await client.post(
                        f"/api/conversations/{conversation_id}/message", json={"message": "hi"}
                    )
                    if small.status_code == 507:
                        break
            assert refusals, "the disk never filled"
            assert refusals[0].headers["Retry-After"]
            assert refusals[0].json()["error"] == "insufficient_storage"
            stopped = await client.post(f"/api/conversations/{conversation_id}/stop")
            assert stopped.status_code in (200, 507), stopped.text
            filler.unlink()  # space returns

            async def recorded_stopped() -> bool:
                # Durable: the run's end is in the log (it retries until space returns).
                events = await client.get(
                    f"/api/conversations/{conversation_id}/events",
                    params={"reverse": "true", "limit": 5},
                )
                return states(events.json()["events"])[:1] == ["stopped"]

            # The end is retried with backoff up to SETTLE_RETRY_MAX: a slow fill (a busy
            # machine) can leave a whole backoff to wait after space returns.
            await wait_for(recorded_stopped, SETTLE_RETRY_MAX + 30)
            info = (await client.get(f"/api/conversations/{conversation_id}")).json()
            assert (info["status"], info["agent_state"]) == ("STOPPED", "stopped")
            sessions = (await client.get("/api/sessions")).json()
            assert sessions["running_count"] == 0
            again = await client.post(
                f"/api/conversations/{conversation_id}/message", json={"message": "back?"}
            )
            assert again.status_code == 200
    finally:
        server.stop()
    log = server.log.read_text()
    assert "Traceback" not in log
    assert log.count("the disk is full") <= 3
