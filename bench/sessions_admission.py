"""`bench/sessions.py` (c): admission while conversations append, end to end over REST.

A fresh ``threadline serve`` (demo agent, paced so slowly that no admitted run gets past
its first sleep during the case, ``THREADLINE_MAX_RUNNING`` above everything: nothing
queues). A separate client process keeps ``appenders`` conversations appending: each of
its tasks posts a user ``think`` action to its own conversation
(``POST .../events``), `APPEND_RATE` a second, for the whole case. Meanwhile this process
creates ``creations`` conversations with an ``initial_user_msg``
(``POST /api/conversations``: admission, the conversation and its first message in one
write, the run's launch), `REQUEST_CONCURRENCY` at a time: creations/s, their latency,
and the appends' rate and latency while the creations went on.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
import time
from multiprocessing.connection import Connection
from pathlib import Path

import httpx

from bench.common import Metrics, latency, log
from bench.processes import Peer, Profiler
from bench.sessions_server import ThreadlineServer

REQUEST_CONCURRENCY = 64
APPEND_RATE = 5.0
"""Appends per second of each appending conversation (one awaited after another)."""
PACE = 60.0
"""The demo agent's pause before its first step: admitted runs only wait."""


async def _append_loop(url: str, count: int, rate: float, conn: Connection) -> None:
    interval = 1 / rate
    limits = httpx.Limits(max_connections=count)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        ids = []
        for index in range(count):
            response = await client.post("/api/conversations", json={"title": f"append {index}"})
            response.raise_for_status()
            ids.append(response.json()["conversation_id"])
        conn.send({"ready": True})
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()

        async def append(conversation_id: str) -> None:
            body = {"action": "think", "args": {"thought": "still thinking " * 8}}
            while not stop.is_set():
                began = time.time()
                response = await client.post(
                    f"/api/conversations/{conversation_id}/events", json=body
                )
                response.raise_for_status()
                samples.append((began, time.time() - began))
                await asyncio.sleep(max(0.0, began + interval - time.time()))

        tasks = [asyncio.create_task(append(conversation_id)) for conversation_id in ids]
        await asyncio.get_running_loop().run_in_executor(None, conn.recv)  # {"op": "stop"}
        stop.set()
        await asyncio.gather(*tasks)
        conn.send({"samples": samples})


def _appender_main(url: str, count: int, rate: float, conn: Connection) -> None:
    asyncio.run(_append_loop(url, count, rate, conn))


async def _create_all(url: str, count: int) -> list[tuple[float, float]]:
    limit = asyncio.Semaphore(REQUEST_CONCURRENCY)
    limits = httpx.Limits(max_connections=REQUEST_CONCURRENCY)
    samples: list[tuple[float, float]] = []
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def create(index: int) -> None:
            async with limit:
                began = time.time()
                response = await client.post(
                    "/api/conversations",
                    json={"title": f"admitted {index}", "agent": "demo", "initial_user_msg": "hi"},
                )
                response.raise_for_status()
                if response.json()["queue_position"] is not None:
                    raise RuntimeError(f"queued instead of admitted: {response.text}")
                samples.append((began, time.time() - began))

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
        appender = Peer(_appender_main, server.url, appenders, rate)
        appender.receive(120)  # its conversations exist
        log(f"(c) {appenders} conversations appending; creating {creations}")
        time.sleep(1.0)  # the appenders reach their pace
        profiler.start(server.pid)
        began = time.time()
        try:
            created = asyncio.run(_create_all(server.url, creations))
        finally:
            ended = time.time()
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
        "admission.server_log_problems": float(problems),
    }
