"""Request bodies are refused while they stream in (issue 9, items 11 and 20): a declared
length over the cap is 413 before a byte is read, a chunked body is 413 the moment it
passes the cap, and the server's memory stays flat under concurrent huge uploads."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import httpx
import pytest

from tests.server.conftest import FAST
from tests.server.rawhttp import memory_kib, upload
from tests.server.running import RunningServer

CAP = 64 * 1024
IMPORT_CAP = 256 * 1024
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    env = {
        **FAST,
        "THREADLINE_MAX_BODY_BYTES": str(CAP),
        "THREADLINE_IMPORT_MAX_BYTES": str(IMPORT_CAP),
    }
    running = RunningServer(tmp_path_factory.mktemp("bodies"), env=env).start()
    yield running
    running.stop()


def conversation(server: RunningServer) -> str:
    response = httpx.post(f"{server.url}/api/conversations", json={})
    assert response.status_code == 201, response.text
    return str(response.json()["conversation_id"])


async def test_a_declared_length_over_the_cap_is_refused_before_the_body_is_sent(
    server: RunningServer,
) -> None:
    path = f"/api/conversations/{conversation(server)}/events"
    # The client sends the head only; an answer must come without waiting for the body.
    answer = await upload(server.port, path, total=100 * MIB, chunked=False, send=False)
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert b'"error":"too_large"' in answer.body


async def test_a_chunked_body_is_refused_once_it_passes_the_cap(server: RunningServer) -> None:
    path = f"/api/conversations/{conversation(server)}/events"
    answer = await upload(server.port, path, total=100 * MIB, chunked=True, time_limit=10)
    assert answer.status == 413
    assert answer.headers["connection"] == "close"
    assert b"larger than 65536 bytes" in answer.body
    # The server stopped reading at the cap: what the client got out is what the socket
    # buffers took, far below the 100 MiB it meant to send.
    assert answer.sent < 20 * MIB


async def test_bodies_under_the_cap_still_work(server: RunningServer) -> None:
    conversation_id = conversation(server)
    text = "y" * (CAP - 1000)
    async with httpx.AsyncClient(base_url=server.url) as client:
        response = await client.post(
            f"/api/conversations/{conversation_id}/events",
            json={"action": "message", "args": {"content": text}},
        )
        assert response.status_code == 200, response.text
        # Creating a conversation has the import cap: this body is over CAP, under it.
        body = {"replay_json": "[" + " " * (CAP * 2) + "]"}
        response = await client.post("/api/conversations", json=body)
        assert response.status_code == 201, response.text
        body = {"replay_json": "[" + " " * IMPORT_CAP + "]"}
        response = await client.post("/api/conversations", json=body)
        assert response.status_code == 413


async def test_engineio_long_polling_bodies_are_bounded_too(server: RunningServer) -> None:
    async with httpx.AsyncClient(base_url=server.url) as client:
        opened = await client.get("/socket.io/", params={"EIO": "4", "transport": "polling"})
        assert opened.status_code == 200
        sid = opened.text.split('"sid":"')[1].split('"')[0]
    path = f"/socket.io/?EIO=4&transport=polling&sid={sid}"
    answer = await upload(server.port, path, total=50 * MIB, chunked=True, time_limit=10)
    assert answer.status == 413


async def test_memory_stays_flat_under_four_concurrent_100_mib_uploads(
    server: RunningServer,
) -> None:
    assert server.process is not None
    path = f"/api/conversations/{conversation(server)}/events"
    before = memory_kib(server.process.pid)
    answers = await asyncio.gather(
        *(
            upload(server.port, path, total=100 * MIB, chunked=chunked, time_limit=60)
            for chunked in (True, True, False, False)
        )
    )
    after = memory_kib(server.process.pid)
    # The peak (VmHWM) over the whole exchange, not a sample: bodies were never held.
    assert after["VmHWM"] - before["VmRSS"] < 48 * 1024, (before, after)
    assert [answer.status for answer in answers] == [413] * 4
