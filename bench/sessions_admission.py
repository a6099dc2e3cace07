"""`bench/sessions.py` (c): admission while conversations append, end to end over REST.

A fresh ``threadline serve`` (demo agent, paced so slowly that no admitted run gets past
its first sleep during the case, ``THREADLINE_MAX_RUNNING`` above everything: nothing
queues). A separate client process keeps ``appenders`` conversations appending: each of
its tasks posts a user ``think`` action to its own conversation
(``POST .../events``), `APPEND_RATE` a second, for the whole case. Meanwhile this process
creates ``creations`` conversations with an ``initial_user_msg``
(``POST /api/conversations``: admission, the conversation and its first message in one
write, the run's launch), `REQUEST_CONCURRENCY` at a time: creations/s, their latency,
and the appends' rate and latency while the creations went on; the server's CPU over
the creations (appends included), per creation. Both clients speak HTTP/1.1 over
keep-alive asyncio streams (`bench.rest_client`: httpx's pool cost more CPU per request
than the server).
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

from bench.common import Metrics, latency, log
from bench.machine import cpu_seconds
from bench.processes import Peer, Profiler
from bench.rest_client import Connections, KeepAlive
from bench.sessions_server import ThreadlineServer

REQUEST_CONCURRENCY = 64
APPEND_RATE = 5.0
"""Appends per second of each appending conversation (one awaited after another)."""
PACE = 60.0
"""The demo agent's pause before its first step: admitted runs only wait."""


async def _append_loop(port: int, count: int, rate: float, conn: Connection) -> None:
    interval = 1 / rate
    # One keep-alive connection per appending conversation, as 100 clients would have.
    connections = [await KeepAlive.open(port) for _ in range(count)]
    ids = []
    for index, connection in enumerate(connections):
        answer = await connection.post("/api/conversations", {"title": f"append {index}"})
        ids.append(answer["conversation_id"])
    conn.send({"ready": True})
    samples: list[tuple[float, float]] = []
    stop = asyncio.Event()

    async def append(connection: KeepAlive, conversation_id: str) -> None:
        body = {"action": "think", "args": {"thought": "still thinking " * 8}}
        while not stop.is_set():
            began = time.time()
            await connection.post(f"/api/conversations/{conversation_id}/events", body)
            samples.append((began, time.time() - began))
            await asyncio.sleep(max(0.0, began + interval - time.time()))

    tasks = [
        asyncio.create_task(append(connection, conversation_id))
        for connection, conversation_id in zip(connections, ids, strict=True)
    ]
    await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # {"op": "stop"}
    stop.set()
    await asyncio.gather(*tasks)
    for connection in connections:
        connection.close()
    conn.send({"samples": samples})


def _appender_main(port: int, count: int, rate: float, conn: Connection) -> None:
    asyncio.run(_append_loop(port, count, rate, conn))


async def _create_all(port: int, count: int) -> list[tuple[float, float]]:
    samples: list[tuple[float, float]] = []
    body = {"agent": "demo", "initial_user_msg": "hi"}
    async with Connections(port, REQUEST_CONCURRENCY) as connections:

        async def create(index: int) -> None:
            async with connections.taken() as connection:
                began = time.time()
                answer = await connection.post(
                    "/api/conversations", {**body, "title": f"admitted {index}"}
                )
                samples.append((began, time.time() - began))
            if answer["queue_position"] is not None:
                raise RuntimeError(f"queued instead of admitted: {answer}")

        await asyncio.gather(*(create(index) for index in range(count)))
    return samples


def measure(
    creations: int, appenders: int, root: Path, profiler: Profiler, rate: float = APPEND_RATE
) -> Metrics:
    data_dir = Path(tempfile.mkdtemp(prefix="admission-", dir=root))
    # Sandbox users must reach their workspaces below it (or every run fails at once).
    for directory in (root, data_dir):
        directory.chmod(0o711)
    env = {
        "THREADLINE_MAX_RUNNING": str(creations + 100),
        "THREADLINE_DEMO_PACE": f"{PACE:g}",
        "THREADLINE_LOG_LEVEL": "warning",
    }
    server = ThreadlineServer(data_dir, env)
    appender: Peer | None = None
    try:
        appender = Peer(_appender_main, server.port, appenders, rate)
        appender.receive(120)  # its conversations exist
        log(f"(c) {appenders} conversations appending; creating {creations}")
        time.sleep(1.0)  # the appenders reach their pace
        profiler.start(server.pid)
        began, server_cpu, own_cpu = time.time(), cpu_seconds(server.pid), time.process_time()
        try:
            created = asyncio.run(_create_all(server.port, creations))
        finally:
            ended = time.time()
            server_cpu = cpu_seconds(server.pid) - server_cpu
            own_cpu = time.process_time() - own_cpu
            profiler.stop()
        appended: list[tuple[float, float]] = appender.ask({"op": "stop"}, 120)["samples"]
        problems = server.problems()
    finally:
        if appender is not None:
            appender.join(30)
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)
    during = [seconds * 1e3 for start, seconds in appended if began <= start <= ended]
    return {
        "admission.creations": float(creations),
        "admission.appenders": float(appenders),
        "admission.append_offered": appenders * rate,
        "admission.rate": creations / (ended - began),
        **latency("admission.create_ms", (seconds * 1e3 for _, seconds in created)),
        "admission.append_rate": len(during) / (ended - began),
        **latency("admission.append_ms", during),
        "admission.server_cpu": server_cpu / (ended - began),
        "admission.server_cpu_ms_per_creation": server_cpu / creations * 1e3,
        "admission.creator_cpu_ms_per_creation": own_cpu / creations * 1e3,
        "admission.server_log_problems": float(problems),
    }
