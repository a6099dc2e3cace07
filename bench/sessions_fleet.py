"""`bench/sessions.py` (a): N concurrent demo-agent conversations on one server process.

For each case (N conversations at a pace) a fresh ``threadline serve`` (its own data
directory) runs with ``THREADLINE_MAX_RUNNING`` above N (nothing queues), the demo agent
paced at ``THREADLINE_DEMO_PACE``, log level warning. Then:

1. N conversations are created empty over REST (``POST /api/conversations``);
2. subscriber processes (`bench.sessions_client`, ``per_worker`` connections each) open
   one WebSocket per conversation with ``latest_event_id=-1``;
3. once all are connected, every conversation gets its first user message
   (``POST .../message``), which logs it as event 0 and starts the demo run: the same
   two steps as ``initial_user_msg`` on creation, but with the subscriber already
   listening, so every event is delivered live and its latency is a live one;
4. the clock runs until the last subscriber has seen its run's final state; then every
   conversation's event count and status are read back over REST.

A demo run is 30 events: states, two messages, plans, three shell commands (each a
``/bin/sh -c`` in its own session: `DEMO_COMMANDS`), a file write and finish, with
``pace`` seconds of sleep before each of the 3 steps and before the end. The server's
CPU is read from /proc: its own (all threads; the main thread, the event loop, alone)
and its reaped children's (the commands).

Beside it, `bench.sessions_spawn` measures what one such command costs on this machine.
"""

from __future__ import annotations

import asyncio
import math
import shutil
import statistics
import tempfile
import time
from array import array
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from bench import sessions_client
from bench.common import Metrics, latency, log
from bench.machine import Usage, memory
from bench.processes import Peer, Profiler
from bench.sessions_server import ThreadlineServer, path_without_shims
from server.agents.demo import STEPS

DEMO_COMMANDS = tuple(command for _, _, command in STEPS)
DEMO_SLEEPS = 4
"""Pauses of ``pace`` seconds in one demo run."""
REQUEST_CONCURRENCY = 32
IDLE_SECONDS = 2.0
"""How long the server's CPU is watched with every subscriber connected and nothing
running, before the runs start."""


@dataclass(frozen=True, slots=True)
class Case:
    conversations: int
    pace: float
    """``THREADLINE_DEMO_PACE``: seconds the demo agent sleeps, 4 times a run."""

    @property
    def key(self) -> str:
        return f"fleet.{self.conversations}@{self.pace:g}s"

    @property
    def label(self) -> str:
        return f"{self.conversations:,} @ {self.pace:g} s"


@dataclass(frozen=True, slots=True)
class FleetConfig:
    cases: tuple[Case, ...]
    hold: Case | None
    """One more case: the largest N at a pace slow enough that every run is still going
    when the last one has been admitted (all N running at once)."""
    per_worker: int
    run_timeout: float
    no_shims: bool
    """Run the server with pyenv's shims taken off ``PATH``."""

    @property
    def all_cases(self) -> tuple[Case, ...]:
        return (*self.cases, *([self.hold] if self.hold else []))


class Subscribers:
    """The subscriber processes for one case: spawned, connected, then asked to watch."""

    def __init__(self, port: int, conversation_ids: list[str], per_worker: int) -> None:
        workers = max(1, math.ceil(len(conversation_ids) / per_worker))
        self._peers = [
            Peer(sessions_client.main, port, conversation_ids[index::workers])
            for index in range(workers)
        ]

    def connected(self, timeout: float = 300.0) -> int:
        total = 0
        for peer in self._peers:
            answer = peer.receive(timeout)
            if answer["errors"]:
                raise RuntimeError(f"subscribers could not connect: {answer['errors']}")
            total += int(answer["connected"])
        return total

    def watch(self, timeout: float) -> list[dict[str, Any]]:
        for peer in self._peers:
            peer.send({"timeout": timeout})
        return [peer.receive(timeout + 60) for peer in self._peers]

    def close(self) -> None:
        for peer in self._peers:
            peer.join(5)


async def _each(
    work: Callable[[httpx.AsyncClient, int], Awaitable[Any]], count: int, url: str
) -> list[Any]:
    """``work(client, index)`` for every index, ``REQUEST_CONCURRENCY`` at a time."""
    limit = asyncio.Semaphore(REQUEST_CONCURRENCY)
    limits = httpx.Limits(max_connections=REQUEST_CONCURRENCY)
    async with httpx.AsyncClient(base_url=url, timeout=120, limits=limits) as client:

        async def one(index: int) -> Any:
            async with limit:
                return await work(client, index)

        return await asyncio.gather(*(one(index) for index in range(count)))


async def _create(url: str, count: int) -> list[str]:
    async def create(client: httpx.AsyncClient, index: int) -> str:
        response = await client.post(
            "/api/conversations", json={"title": f"bench {index}", "agent": "demo"}
        )
        response.raise_for_status()
        return str(response.json()["conversation_id"])

    return await _each(create, count, url)


async def _start(url: str, conversation_ids: list[str]) -> None:
    async def start(client: httpx.AsyncClient, index: int) -> None:
        response = await client.post(
            f"/api/conversations/{conversation_ids[index]}/message",
            json={"message": f"look around, please (conversation {index})"},
        )
        response.raise_for_status()

    await _each(start, len(conversation_ids), url)


async def _audit(url: str, received: dict[str, int]) -> tuple[int, Counter[str]]:
    """(conversations whose event count on the server differs from what their subscriber
    received, conversation statuses on the server)."""
    ids = list(received)

    async def count(client: httpx.AsyncClient, index: int) -> bool:
        response = await client.get(f"/api/conversations/{ids[index]}/events/count")
        response.raise_for_status()
        return int(response.json()["count"]) != received[ids[index]]

    mismatched = sum(await _each(count, len(ids), url))
    statuses: Counter[str] = Counter()
    async with httpx.AsyncClient(base_url=url, timeout=60) as client:
        page_id = None
        while True:
            params = {"limit": 100, **({"page_id": page_id} if page_id else {})}
            page = (await client.get("/api/conversations", params=params)).json()
            statuses.update(item["status"] for item in page["results"])
            page_id = page.get("next_page_id")
            if not page_id:
                break
    return mismatched, statuses


def measure(config: FleetConfig, case: Case, root: Path, profiler: Profiler) -> Metrics:
    """One case: ``case.conversations`` demo conversations started at once on a fresh
    server."""
    count = case.conversations
    data_dir = Path(tempfile.mkdtemp(prefix=f"fleet-{count}-", dir=root))
    data_dir.chmod(0o711)  # sandbox users must reach their workspaces below it
    env = {
        "THREADLINE_MAX_RUNNING": str(max(2000, 2 * count)),
        "THREADLINE_DEMO_PACE": f"{case.pace:g}",
        "THREADLINE_LOG_LEVEL": "warning",
    }
    if config.no_shims:
        env["PATH"] = path_without_shims()
    server = ThreadlineServer(data_dir, env)
    subscribers: Subscribers | None = None
    try:
        started = time.perf_counter()
        ids = asyncio.run(_create(server.url, count))
        created_s = time.perf_counter() - started

        started = time.perf_counter()
        subscribers = Subscribers(server.port, ids, config.per_worker)
        connected = subscribers.connected()
        connect_s = time.perf_counter() - started
        if connected != count:
            raise RuntimeError(f"{connected} of {count} subscribers connected")
        rss_idle, _, _ = memory(server.pid)
        before = Usage.of(server.pid)
        time.sleep(IDLE_SECONDS)
        idle = Usage.of(server.pid) - before

        before = Usage.of(server.pid)
        profiler.start(server.pid)
        started_wall, started = time.time(), time.perf_counter()
        asyncio.run(_start(server.url, ids))
        start_s = time.perf_counter() - started
        try:
            tallies = subscribers.watch(config.run_timeout)
        finally:
            profiler.stop()
        used = Usage.of(server.pid) - before
        rss_now, rss_peak, threads = memory(server.pid)

        received = {key: value for tally in tallies for key, value in tally["received"].items()}
        mismatched, statuses = asyncio.run(_audit(server.url, received))
        problems = server.problems()
    finally:
        if subscribers is not None:
            subscribers.close()
        server.stop()
        shutil.rmtree(data_dir, ignore_errors=True)

    latencies, spans = array("d"), array("d")
    for tally in tallies:
        latencies.frombytes(tally["latencies_ms"])
        spans.frombytes(tally["run_spans"])
    runs = list(zip(spans[::2], spans[1::2], strict=True))
    events = sum(received.values())
    finished_wall = max(tally["last_received_at"] for tally in tallies)
    makespan = finished_wall - started_wall
    finals: Counter[str] = Counter()
    for tally in tallies:
        finals.update(tally["final_states"])
    p = case.key
    found: Metrics = {
        f"{p}.created_s": created_s,
        f"{p}.connect_s": connect_s,
        f"{p}.start_s": start_s,
        f"{p}.makespan_s": makespan,
        **_seconds(f"{p}.run", (end - start for start, end in runs)),
        f"{p}.peak_running": float(_peak(runs)),
        f"{p}.events": float(events),
        f"{p}.events_per_s": events / makespan if makespan > 0 else math.nan,
        f"{p}.commands_per_s": len(DEMO_COMMANDS) * count / makespan if makespan > 0 else math.nan,
        **latency(f"{p}.latency", latencies),
        f"{p}.gaps": float(sum(tally["gaps"] for tally in tallies)),
        f"{p}.duplicates": float(sum(tally["duplicates"] for tally in tallies)),
        f"{p}.unfinished": float(sum(tally["unfinished"] for tally in tallies)),
        f"{p}.count_mismatch": float(mismatched),
        f"{p}.error_runs": float(statuses.get("ERROR", 0)),
        f"{p}.not_finished_runs": float(count - finals.get("finished", 0)),
        f"{p}.failed_commands": float(sum(tally["failed_commands"] for tally in tallies)),
        f"{p}.server_log_problems": float(problems),
        f"{p}.cpu_idle_core": idle.own / IDLE_SECONDS,
        f"{p}.cpu_server_s": used.own,
        f"{p}.cpu_commands_s": used.children,
        f"{p}.cpu_server_core": used.own / makespan,
        f"{p}.cpu_main_core": used.main / makespan,
        f"{p}.cpu_commands_core": used.children / makespan,
        f"{p}.machine_busy": used.machine_share,
        f"{p}.rss_idle_mib": rss_idle,
        f"{p}.rss_peak_mib": rss_peak,
        f"{p}.rss_after_mib": rss_now,
        f"{p}.threads_after": float(threads),
    }
    log(
        f"  {case.label}: {makespan:.1f} s, {found[f'{p}.events_per_s']:,.0f} events/s, "
        f"p99 {found[f'{p}.latency.p99']:.0f} ms, finals {dict(finals)}, statuses "
        f"{dict(statuses)}, server {used.own:.1f} s CPU + commands {used.children:.1f} s"
    )
    return found


def _peak(runs: list[tuple[float, float]]) -> int:
    """The most runs in progress at one moment (server timestamps: from the first user
    message to the final state)."""
    moments = sorted([(start, 1) for start, _ in runs] + [(end, -1) for _, end in runs])
    running = peak = 0
    for _, change in moments:
        running += change
        peak = max(peak, running)
    return peak


def _seconds(prefix: str, samples: Iterable[float]) -> Metrics:
    ordered = sorted(samples)
    if not ordered:
        return {f"{prefix}.p50_s": math.nan, f"{prefix}.max_s": math.nan}
    return {
        f"{prefix}.p50_s": statistics.median(ordered),
        f"{prefix}.max_s": ordered[-1],
    }
