"""What an operator sees: ``/metrics`` (parsed with prometheus-client's own parser),
``/healthz`` and ``/readyz``, JSON log lines naming conversations, and a runtime this
installation lacks refused at create time with a 400 (never a 500, nothing written)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest
import socketio
import websockets

from client import AsyncThreadline, agent_state_of
from tests.server.clients import create, follow
from tests.server.conftest import FAST
from tests.server.openapi_check import undocumented
from tests.server.prometheus import scrape, value
from tests.server.running import RunningServer


async def test_metrics_count_streams_runs_the_queue_appends_and_deliveries(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env.update({"THREADLINE_MAX_RUNNING": "1", "THREADLINE_LLM_CURRENCY": "EUR"})
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as http:
        response = await http.get("/metrics")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/plain; version=")
        empty = scrape(response.text)
        assert value(empty, "threadline_webhook_failures_total") == 0
        assert value(empty, "threadline_events_appended_total") == 0
        assert value(empty, "threadline_stream_connections", transport="websocket") == 0
        assert value(empty, "threadline_llm_cost", currency="EUR") == 0

        # One run held at its limit (it keeps the only slot), one queued behind it,
        # watched live over each transport while it works.
        held = await create(http, title="first", max_iterations=3)
        watcher = asyncio.create_task(
            follow(fresh_server, held, until=lambda e: agent_state_of(e) == "error")
        )
        await asyncio.sleep(0.3)  # subscribed: what follows is delivered live
        await http.post(f"/api/conversations/{held}/message", json={"message": "first"})
        watched = await watcher
        queued = await create(http, initial_user_msg="second")
        async with _streams(fresh_server, held):
            samples = scrape((await http.get("/metrics")).text)
        for transport in ("websocket", "sse", "socketio"):
            assert value(samples, "threadline_stream_connections", transport=transport) == 1
        assert value(samples, "threadline_conversations_running") == 1
        assert value(samples, "threadline_queue_depth") == 1
        assert value(samples, "threadline_sandboxes", runtime="local") == 1
        appended = value(samples, "threadline_events_appended_total")
        stored = await http.get(f"/api/conversations/{held}/events/count")
        stored_q = await http.get(f"/api/conversations/{queued}/events/count")
        assert appended == stored.json()["count"] + stored_q.json()["count"]
        assert appended >= len(watched)
        assert value(samples, "threadline_append_latency_seconds_count") >= 1
        assert value(samples, "threadline_append_latency_seconds_bucket", le="+Inf") >= 1
        assert value(samples, "threadline_delivery_latency_seconds_count") >= 1
        assert value(samples, "threadline_subscribers") == 3
        assert value(samples, "threadline_subscriber_lag_max_events") >= 0
        assert value(samples, "threadline_search_index_lag_events") >= 0

        await http.post(f"/api/conversations/{held}/stop")
        async with asyncio.timeout(20):
            while True:
                samples = scrape((await http.get("/metrics")).text)
                if value(samples, "threadline_queue_depth") == 0:
                    break
                await asyncio.sleep(0.1)


async def _open_sse(url: str) -> AsyncIterator[None]:
    async with httpx.AsyncClient(timeout=20) as http, http.stream("GET", url) as response:
        assert response.status_code == 200
        yield


class _streams:
    """A WebSocket, an SSE response and a Socket.IO client open on one conversation."""

    def __init__(self, server: RunningServer, conversation_id: str) -> None:
        self.server, self.conversation_id = server, conversation_id
        self._stack: Any = None

    async def __aenter__(self) -> None:
        self._stack = stack = contextlib.AsyncExitStack()
        base = f"/api/conversations/{self.conversation_id}/events"
        await stack.enter_async_context(websockets.connect(self.server.ws_url + base))
        await stack.enter_async_context(
            contextlib.asynccontextmanager(_open_sse)(f"{self.server.url}{base}/stream")
        )
        sio = socketio.AsyncClient(reconnection=False)
        await sio.connect(
            f"{self.server.url}?conversation_id={self.conversation_id}", transports=["websocket"]
        )
        stack.push_async_callback(sio.disconnect)
        await asyncio.sleep(0.2)  # the server has opened all three

    async def __aexit__(self, *_: object) -> None:
        await self._stack.aclose()


async def test_healthz_and_readyz(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        assert (await http.get("/healthz")).json() == {"status": "ok"}
        ready = await http.get("/readyz")
        assert ready.status_code == 200, ready.text
        assert ready.json() == {
            "status": "ready",
            "checks": {"storage": "ok", "search_index": "ok", "runtime": "ok"},
        }


async def test_json_logs_name_the_conversation(fresh_server: RunningServer) -> None:
    fresh_server.env["THREADLINE_LOG_FORMAT"] = "json"
    fresh_server.log_level = "info"
    fresh_server.start()
    async with AsyncThreadline(fresh_server.url) as api:
        conversation = await api.create("look around")
        async for event in api.watch(conversation.id):
            if agent_state_of(event) == "finished":
                break
        await asyncio.sleep(0.2)
    lines = [orjson.loads(line) for line in fresh_server.log.read_text().splitlines() if line]
    assert all({"time", "level", "logger", "message"} <= line.keys() for line in lines)
    mine = [line["message"] for line in lines if line.get("conversation_id") == conversation.id]
    assert "run started: agent demo, local runtime" in mine
    assert "run ended: finished" in mine
    assert any(line["logger"] == "uvicorn.access" for line in lines)  # uvicorn's, as JSON


@pytest.fixture
def without_docker_extra(tmp_path: Path) -> dict[str, str]:
    """Python started with aiodocker unimportable, as without the docker extra."""
    site = tmp_path / "no-aiodocker"
    site.mkdir()
    (site / "sitecustomize.py").write_text("import sys\nsys.modules['aiodocker'] = None\n")
    return {"PYTHONPATH": str(site), "THREADLINE_RUNTIME": "docker"}


async def test_a_missing_docker_extra_is_a_400_at_create_and_writes_nothing(
    tmp_path: Path, without_docker_extra: dict[str, str]
) -> None:
    running = RunningServer(tmp_path / "server", env={**FAST, **without_docker_extra}).start()
    try:
        async with httpx.AsyncClient(base_url=running.url, timeout=20) as http:
            response = await http.post("/api/conversations", json={"initial_user_msg": "hi"})
            assert response.status_code == 400, response.text
            body = response.json()
            assert (body["error"], body["field"]) == ("runtime_unavailable", "runtime")
            assert "pip install 'threadline[docker]'" in body["message"]
            assert "threadline sandbox build" in body["message"]
            assert (await http.get("/api/conversations")).json()["results"] == []

            ready = await http.get("/readyz")
            assert ready.status_code == 503
            assert "threadline[docker]" in ready.json()["checks"]["runtime"]
        assert "Traceback" not in running.log.read_text()
    finally:
        running.stop()


async def test_the_operator_routes_and_until_are_documented(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
        spec = (await http.get("/openapi.json")).json()
        answers = [await http.get(path) for path in ("/healthz", "/readyz", "/metrics", "/alive")]
    assert [undocumented(spec, answer) for answer in answers] == [None] * 4
    # Create answers 201, and only 201 is documented for success.
    created = spec["paths"]["/api/conversations"]["post"]["responses"]
    assert [status for status in created if status.startswith("2")] == ["201"]
    stream = spec["paths"]["/api/conversations/{conversation_id}/events/stream"]["get"]
    assert "until" in [parameter["name"] for parameter in stream["parameters"]]
