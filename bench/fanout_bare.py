"""The raw limit of the fan-out benchmark: a minimal `websockets` server that sends every
event to every connection with `websockets.broadcast` (one encoding per event, no task
per subscriber, no storage), and the publishing loop and command pipe the threadline
server process (`bench.fanout_server`) shares with it.

It imports nothing of threadline, so its RSS is that of a bare server. The events are the
bytes of a stored probe event (`bench.fanout_server.probe_template`) with the id and the
send time filled in.

Commands (dicts through the pipe, each answered with one dict): ``latest`` -> newest
event id; ``subscribers`` -> open connections; ``publish`` (``count``, ``rate`` or None
for back to back) -> timings; ``stop``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from multiprocessing.connection import Connection
from typing import Any

from websockets.asyncio.server import ServerConnection, broadcast, serve

Emit = Callable[[float], Awaitable[None]]
"""``emit(sent_at)``: make one event, stamped with ``sent_at``, reach the subscribers."""
Handle = Callable[[dict[str, Any]], Awaitable[dict[str, Any]]]


async def publish(emit: Emit, count: int, rate: float | None) -> dict[str, Any]:
    """``count`` events at ``rate`` per second on a fixed schedule (a late event does not
    make the next one early), or back to back when ``rate`` is None. ``emit_ms``: how
    long each ``emit`` took."""
    emit_ms: list[float] = []
    loop = asyncio.get_running_loop()
    started_wall, started = time.time(), loop.time()
    for index in range(count):
        if rate is not None:
            delay = started + index / rate - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)
        before = time.perf_counter()
        await emit(time.time())
        emit_ms.append((time.perf_counter() - before) * 1000)
    return {"started": started_wall, "finished": time.time(), "emit_ms": emit_ms}


async def serve_commands(conn: Connection, handle: Handle) -> None:
    """Answer the orchestrator's commands until ``stop``."""
    while True:
        command: dict[str, Any] = await asyncio.to_thread(conn.recv)
        if command["op"] == "stop":
            return
        conn.send(await handle(command))


async def run_bare(port: int, template: bytes, conn: Connection) -> None:
    connections: set[ServerConnection] = set()
    next_id = 0

    async def handler(connection: ServerConnection) -> None:
        connections.add(connection)
        try:
            await connection.wait_closed()
        finally:
            connections.discard(connection)

    async def emit(sent_at: float) -> None:
        nonlocal next_id
        data = template % {b"id": next_id, b"sent": b"%.6f" % sent_at}
        next_id += 1
        broadcast(connections, data, text=True)
        await asyncio.sleep(0)  # let the loop write, as an awaited append does

    async def handle(command: dict[str, Any]) -> dict[str, Any]:
        match command["op"]:
            case "latest":
                return {"latest": next_id - 1}
            case "subscribers":
                return {"subscribers": len(connections)}
            case "publish":
                return await publish(emit, command["count"], command["rate"])
        raise ValueError(f"unknown command {command!r}")

    async with serve(handler, "127.0.0.1", port, compression=None):
        conn.send({"conversation_id": "bare"})
        await serve_commands(conn, handle)


def main(port: int, template: bytes, conn: Connection) -> None:
    """The process entry point (a `multiprocessing` target)."""
    asyncio.run(run_bare(port, template, conn))
