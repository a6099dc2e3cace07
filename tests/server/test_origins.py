"""Cross-site requests: a web page on another origin must not drive the server."""

from __future__ import annotations

from pathlib import Path

import aiohttp
import httpx
import pytest
import socketio
import websockets

from server.origins import origin_allowed
from tests.server.clients import create
from tests.server.running import RunningServer

EVIL = "http://evil.example"


def test_origin_rules() -> None:
    assert origin_allowed(None, "127.0.0.1:3000", ())
    assert origin_allowed("http://127.0.0.1:3000", "127.0.0.1:3000", ())
    assert not origin_allowed(EVIL, "127.0.0.1:3000", ())
    assert origin_allowed(EVIL, "127.0.0.1:3000", (EVIL,))
    assert not origin_allowed("http://127.0.0.1:3001", "127.0.0.1:3000", ())


async def test_foreign_pages_cannot_change_anything(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="csrf target")
    attacks = [
        ("POST", "/api/conversations", '{"initial_user_msg": "run something"}'),
        (
            "POST",
            f"/api/conversations/{conversation_id}/events",
            '{"action": "run", "args": {"command": "id"}}',
        ),
        ("POST", f"/api/conversations/{conversation_id}/message", '{"message": "hi"}'),
        ("DELETE", f"/api/conversations/{conversation_id}", None),
    ]
    for method, path, body in attacks:
        response = await client.request(
            method, path, content=body, headers={"Origin": EVIL, "Content-Type": "text/plain"}
        )
        assert response.status_code == 403, (method, path)
        assert response.json()["error"] == "forbidden_origin"
    assert (await client.get(f"/api/conversations/{conversation_id}/events/count")).json() == {
        "count": 0
    }
    same_origin = await client.post(
        f"/api/conversations/{conversation_id}/events",
        json={"action": "think", "args": {"thought": "ok"}},
        headers={"Origin": server.url},
    )
    assert same_origin.status_code == 200


async def test_foreign_pages_cannot_open_streams(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    conversation_id = await create(client, title="ws target")
    url = f"{server.ws_url}/api/conversations/{conversation_id}/events"
    with pytest.raises(websockets.InvalidStatus) as refused:
        async with websockets.connect(url, origin=EVIL):  # type: ignore[arg-type]
            pass
    assert refused.value.response.status_code == 403
    async with websockets.connect(url, origin=server.url):  # type: ignore[arg-type]
        pass
    async with aiohttp.ClientSession() as session:  # closed here even when connect fails
        sio = socketio.AsyncClient(reconnection=False, http_session=session)
        with pytest.raises(socketio.exceptions.ConnectionError):
            await sio.connect(
                f"{server.url}?conversation_id={conversation_id}",
                headers={"Origin": EVIL},
                transports=["websocket"],
                wait_timeout=10,
            )


async def test_listed_origins_are_allowed(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "s", env={"THREADLINE_CORS_ORIGINS": EVIL}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url) as http:
            response = await http.post(
                "/api/conversations", json={"title": "x"}, headers={"Origin": EVIL}
            )
            assert response.status_code == 201
            assert response.headers["access-control-allow-origin"] == EVIL
    finally:
        server.stop()


async def test_dns_rebinding_is_refused(client: httpx.AsyncClient, server: RunningServer) -> None:
    """A page on evil.example whose name was rebound to 127.0.0.1 sends its own name as
    Host and its own origin as Origin: the two agree, but the name is not ours."""
    rebound = f"evil.example:{server.port}"
    attacks = [
        ("POST", "/api/conversations", '{"initial_user_msg": "run something"}'),
        ("GET", "/api/conversations", None),
        ("GET", "/api/health", None),
    ]
    for method, path, body in attacks:
        response = await client.request(
            method,
            path,
            content=body,
            headers={"Host": rebound, "Origin": f"http://{rebound}", "Content-Type": "text/plain"},
        )
        assert response.status_code == 403, (method, path, response.text)
        assert response.json()["error"] == "forbidden_host"
    for path in ("/socket.io/?EIO=4&transport=websocket", "/api/conversations/x/events"):
        # Connects to 127.0.0.1 while naming evil.example, as the rebound page does.
        with pytest.raises(websockets.InvalidStatus) as refused:
            async with websockets.connect(
                f"ws://{rebound}{path}", host="127.0.0.1", port=server.port
            ):
                pass
        assert refused.value.response.status_code == 403


async def test_names_and_addresses_we_answer_to(server: RunningServer) -> None:
    """IP literals cannot be rebound; localhost is ours; anything else must be listed."""
    for host in (f"127.0.0.1:{server.port}", f"localhost:{server.port}", "[::1]", "10.1.2.3"):
        async with httpx.AsyncClient(base_url=server.url, headers={"Host": host}) as http:
            assert (await http.get("/api/health")).status_code == 200, host
    async with httpx.AsyncClient(base_url=server.url, headers={"Host": "threadline.lan"}) as http:
        assert (await http.get("/api/health")).status_code == 403


async def test_listed_names_are_allowed(tmp_path: Path) -> None:
    running = RunningServer(
        tmp_path / "server", env={"THREADLINE_ALLOWED_HOSTS": "threadline.lan,*.corp.example"}
    ).start()
    try:
        for host, status in (
            ("threadline.lan", 200),
            ("agents.corp.example:8443", 200),
            ("corp.example.evil.example", 403),
        ):
            async with httpx.AsyncClient(base_url=running.url, headers={"Host": host}) as http:
                assert (await http.get("/api/health")).status_code == status, host
    finally:
        running.stop()
