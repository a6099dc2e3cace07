"""The threadline side of the fan-out benchmark: a process the orchestrator starts with
`multiprocessing` (spawn) and drives through a pipe (the commands of
`bench.fanout_bare`).

It runs threadline's own app (`server.app.create_app`) under uvicorn, configured like
``threadline serve`` (`ThreadlineServer`, no permessage-deflate, the CLI's ping
settings; log level warning, so no line per accepted WebSocket), on a `SqliteStorage`
this process owns, and appends each event itself with ``storage.append``: append ->
receive latency runs from the call that makes an event durable to the moment a client
has read it.
"""

from __future__ import annotations

import asyncio
import contextlib
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import uvicorn

from bench.fanout_bare import publish, serve_commands
from bench.fanout_probe import EVENT_BYTES, stamped_thought
from events import AgentThinkAction
from events.actions import ThinkArgs
from server.app import create_app
from server.serving import ThreadlineServer
from server.settings import Settings
from storage import NewConversation, Storage
from storage.records import now_micros, prepare, stamp
from storage.sqlite import SqliteStorage

_MARK_TIME = 1_000_000_000.0
_MARK_ID = 999_999_999


def probe_event(sent_at: float, length: int) -> AgentThinkAction:
    """A think action whose thought starts with ``sent_at`` (see `stamped_thought`)."""
    return AgentThinkAction(
        source="agent", args=ThinkArgs(thought=stamped_thought(sent_at, length))
    )


def probe_bytes(length: int) -> int:
    """How long a stored probe event with a thought of ``length`` characters is."""
    return len(stamp(prepare(probe_event(_MARK_TIME, length)), _MARK_ID, now_micros()))


def probe_length() -> int:
    """The thought length that makes a stored probe event about `EVENT_BYTES` long (the
    thought is in it twice: in ``args`` and in ``message``)."""
    shortest = len(stamped_thought(0.0, 0))
    return shortest + max(0, EVENT_BYTES - probe_bytes(0)) // 2


def probe_template(length: int) -> bytes:
    """A stored probe event's bytes, with ``%(id)d`` and ``%(sent)s`` where its id and
    send time go (bytes %-formatting), for the bare server."""
    data = stamp(prepare(probe_event(_MARK_TIME, length)), _MARK_ID, now_micros())
    data = data.replace(b"%", b"%%").replace(b'"id":%d' % _MARK_ID, b'"id":%(id)d', 1)
    return data.replace(b"%.6f" % _MARK_TIME, b"%(sent)s")


async def start_server(
    settings: Settings, storage: Storage
) -> tuple[Any, ThreadlineServer, asyncio.Task[None]]:
    """threadline's app on ``storage`` under uvicorn, configured like ``threadline serve``
    (see the module's docstring): the app, the server, and the task serving it, once it
    accepts connections."""
    app = create_app(settings, storage=storage)
    config = uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        log_level=settings.log_level,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_interval * 2,
        ws_per_message_deflate=False,
        timeout_graceful_shutdown=5,
        lifespan="on",
    )
    server = ThreadlineServer(config, app)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()  # raises what stopped it
        await asyncio.sleep(0.01)
    return app, server, serving


async def stop_server(server: ThreadlineServer, serving: asyncio.Task[None]) -> None:
    server.should_exit = True
    with contextlib.suppress(asyncio.CancelledError):
        await serving


async def run_ours(port: int, data_dir: Path, length: int, conn: Connection) -> None:
    storage = await SqliteStorage.open(data_dir / "log")
    record = await storage.create_conversation(NewConversation(title="fanout benchmark"))
    settings = Settings(host="127.0.0.1", port=port, data_dir=data_dir, log_level="warning")
    app, server, serving = await start_server(settings, storage)

    async def emit(sent_at: float) -> None:
        await storage.append(record.id, probe_event(sent_at, length))

    async def handle(command: dict[str, Any]) -> dict[str, Any]:
        match command["op"]:
            case "latest":
                return {"latest": await storage.latest_event_id(record.id)}
            case "subscribers":
                return {"subscribers": len(app.state.streams)}
            case "publish":
                return await publish(emit, command["count"], command["rate"])
        raise ValueError(f"unknown command {command!r}")

    conn.send({"conversation_id": record.id})
    try:
        await serve_commands(conn, handle)
    finally:
        await stop_server(server, serving)
        await storage.close()


def main(port: int, data_dir: str, length: int, conn: Connection) -> None:
    """The process entry point (a `multiprocessing` target)."""
    asyncio.run(run_ours(port, Path(data_dir), length, conn))
