"""Shutdown, crash and restart: runs end on the record, and streams resume gaplessly."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx

from tests.server.clients import agent_state, create, ended, follow, ids
from tests.server.running import RunningServer

SLOW = {"THREADLINE_DEMO_PACE": "0.5"}


def _running(event: dict[str, object]) -> bool:
    return agent_state(event) == "running"


async def test_graceful_shutdown_records_the_stop_and_streams_resume(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "server", env=SLOW).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            conversation_id = await create(http, initial_user_msg="survive a restart")
        before = await follow(server, conversation_id, until=_running)
        assert server.stop(signal.SIGTERM) in (0, -signal.SIGTERM)
        server.start()
        after = await follow(server, conversation_id, after=before[-1]["id"])
        assert agent_state(after[-1]) == "stopped"
        assert after[-1]["extras"]["reason"] == "the server is shutting down"
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            info = (await http.get(f"/api/conversations/{conversation_id}")).json()
            assert (info["status"], info["agent_state"]) == ("STOPPED", "stopped")
            sent = await http.post(
                f"/api/conversations/{conversation_id}/message", json={"message": "go on"}
            )
            assert sent.status_code == 200
        rest = await follow(server, conversation_id, after=after[-1]["id"])
        assert agent_state(rest[-1]) == "finished"
        sequence = ids(before) + ids(after) + ids(rest)
        assert sequence == list(range(len(sequence)))
    finally:
        server.stop()


async def test_a_crash_is_recorded_at_the_next_start(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "server", env=SLOW).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            conversation_id = await create(http, initial_user_msg="crash")
        seen = await follow(server, conversation_id, until=_running)
        server.stop(signal.SIGKILL)
        server.start()
        after = await follow(server, conversation_id, after=seen[-1]["id"], until=ended)
        assert agent_state(after[-1]) == "stopped"
        assert after[-1]["extras"]["reason"] == "the server restarted"
        sequence = ids(seen) + ids(after)
        assert sequence == list(range(len(sequence)))
    finally:
        server.stop()
