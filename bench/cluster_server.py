"""One server process of the cluster benchmark (`bench/cluster.py`): what ``threadline
serve`` runs (`server.app.open_store` on the settings' ``database``, or SQLite in the
data directory without one; the app under uvicorn as `bench.fanout_server` starts it),
started with `multiprocessing` (spawn) and driven through a pipe.

Process 1 of a case creates the conversation and appends its events itself with
``storage.append``, each stamped with the wall-clock time of that call (the ``publish``
command of `bench.fanout_bare`); the other processes only serve their subscribers, who
get those events through PostgreSQL NOTIFY and the process's `RemoteFeed`.

Commands: ``latest`` -> the conversation's newest id (process 1), ``subscribers`` ->
open streams, ``publish`` (``count``, ``rate``) -> timings (process 1), ``stop``.
"""

from __future__ import annotations

import asyncio
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.fanout_bare import publish, serve_commands
from bench.fanout_server import probe_event, start_server, stop_server
from server.app import open_store
from server.settings import Settings
from storage import NewConversation


async def run(
    port: int, database: str | None, data_dir: Path, length: int, creator: bool, conn: Connection
) -> None:
    settings = Settings(
        host="127.0.0.1", port=port, data_dir=data_dir, database=database, log_level="warning"
    )
    storage = await open_store(settings)
    conversation_id = ""
    if creator:
        record = await storage.create_conversation(NewConversation(title="cluster benchmark"))
        conversation_id = record.id
    app, server, serving = await start_server(settings, storage)

    async def emit(sent_at: float) -> None:
        await storage.append(conversation_id, probe_event(sent_at, length))

    async def handle(command: dict[str, Any]) -> dict[str, Any]:
        match command["op"]:
            case "latest" if creator:
                return {"latest": await storage.latest_event_id(conversation_id)}
            case "subscribers":
                return {"subscribers": len(app.state.streams)}
            case "publish" if creator:
                return await publish(emit, command["count"], command["rate"])
        raise ValueError(f"unknown command {command!r} (creator: {creator})")

    conn.send({"conversation_id": conversation_id})
    try:
        await serve_commands(conn, handle)
    finally:
        await stop_server(server, serving)
        await storage.close()


def main(
    port: int, database: str | None, data_dir: str, length: int, creator: bool, conn: Connection
) -> None:
    """The process entry point (a `multiprocessing` target)."""
    asyncio.run(run(port, database, Path(data_dir), length, creator, conn))
