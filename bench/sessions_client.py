"""Subscriber processes of `bench/sessions.py` (a): each watches many conversations over
threadline's plain WebSocket, one connection per conversation, on one asyncio loop.

A worker opens ``/api/conversations/{id}/events?latest_event_id=-1`` for each of its
conversations, answers ``{"connected": n, "errors": [...]}``, then waits for
``{"timeout": seconds}`` (sent once the runs were started) and watches until every run
has ended or the time is up, and answers with its `tally`. Each connection checks that
the ids it sees are 0, 1, 2, ... (no gap, no duplicate), takes append -> deliver
latency as its receive wall clock minus the event's ``timestamp`` (stamped by the
server's log writer in the transaction that made it durable; same machine, same clock),
and closes when the run's final ``agent_state_changed`` arrives.

Imports nothing of threadline: the client's share of the CPUs stays small.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from array import array
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime
from multiprocessing.connection import Connection
from typing import Any

import orjson
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

CONNECT_CONCURRENCY = 32
FINAL_STATES = frozenset({"finished", "stopped", "rejected", "error"})
"""Agent states a demo run ends in (``error`` only holds a run that hit a limit, which a
demo run with the default iteration limit does not)."""


@dataclass(slots=True)
class Watch:
    """One conversation's stream, as this subscriber saw it."""

    conversation_id: str
    expected: int = 0
    received: int = 0
    gaps: int = 0
    duplicates: int = 0
    final_state: str | None = None
    failed_commands: int = 0
    started_at: float | None = None
    """Server timestamp of event 0 (the user message that started the run)."""
    ended_at: float | None = None
    """Server timestamp of the final state change."""
    done: asyncio.Event = field(default_factory=asyncio.Event)

    def see(self, document: dict[str, Any], received_at: float, latencies: array[float]) -> None:
        event_id = document["id"]
        if event_id < self.expected:
            self.duplicates += 1
            return
        if event_id > self.expected:
            self.gaps += event_id - self.expected
        self.expected = event_id + 1
        self.received += 1
        stamped = datetime.fromisoformat(document["timestamp"]).timestamp()
        latencies.append((received_at - stamped) * 1000)
        if event_id == 0:
            self.started_at = stamped
        extras = document.get("extras") or {}
        if document.get("observation") == "run" and extras.get("metadata", {}).get("exit_code"):
            self.failed_commands += 1
        if document.get("observation") == "agent_state_changed":
            state = extras.get("agent_state")
            if state in FINAL_STATES:
                self.final_state = state
                self.ended_at = stamped
                self.done.set()


class Worker:
    def __init__(self, port: int, conversation_ids: list[str]) -> None:
        self._port = port
        self._watches = [Watch(conversation_id) for conversation_id in conversation_ids]
        self._latencies: array[float] = array("d")
        self._first_received_at = 0.0
        self._last_received_at = 0.0
        self._tasks: list[asyncio.Task[None]] = []

    async def connect(self) -> dict[str, Any]:
        limit = asyncio.Semaphore(CONNECT_CONCURRENCY)
        errors: list[str] = []

        async def one(watch: Watch) -> None:
            uri = (
                f"ws://127.0.0.1:{self._port}/api/conversations/"
                f"{watch.conversation_id}/events?latest_event_id=-1"
            )
            async with limit:
                try:
                    socket = await connect(
                        uri, compression=None, max_size=None, ping_interval=None, open_timeout=60
                    )
                except (OSError, TimeoutError, ConnectionClosed) as exc:
                    errors.append(f"{type(exc).__name__}: {exc}")
                    watch.done.set()
                    return
            self._tasks.append(asyncio.create_task(self._watch(socket, watch)))

        await asyncio.gather(*(one(watch) for watch in self._watches))
        return {"connected": len(self._tasks), "errors": errors[:5]}

    async def _watch(self, socket: ClientConnection, watch: Watch) -> None:
        try:
            async for message in socket:
                now = time.time()
                if not self._first_received_at:
                    self._first_received_at = now
                self._last_received_at = now
                watch.see(orjson.loads(message), now, self._latencies)
                if watch.done.is_set():
                    break
        except ConnectionClosed:
            pass
        finally:
            watch.done.set()
            await socket.close()

    async def watch(self, seconds: float) -> dict[str, Any]:
        """Wait until every run ended, or ``seconds`` passed; then the tally."""
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await asyncio.gather(*(watch.done.wait() for watch in self._watches))
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        return self.tally()

    def tally(self) -> dict[str, Any]:
        watches = self._watches
        spans = array("d")
        for w in watches:
            if w.ended_at is not None and w.started_at is not None:
                spans.extend((w.started_at, w.ended_at))
        return {
            "conversations": len(watches),
            "received": {w.conversation_id: w.received for w in watches},
            "gaps": sum(w.gaps for w in watches),
            "duplicates": sum(w.duplicates for w in watches),
            "unfinished": sum(w.final_state is None for w in watches),
            "final_states": dict(Counter(w.final_state or "none" for w in watches)),
            "failed_commands": sum(w.failed_commands for w in watches),
            "first_received_at": self._first_received_at,
            "last_received_at": self._last_received_at,
            "last_ended_at": max((w.ended_at or 0.0 for w in watches), default=0.0),
            "latencies_ms": self._latencies.tobytes(),
            "run_spans": spans.tobytes(),
        }


async def _main(port: int, conversation_ids: list[str], conn: Connection) -> None:
    worker = Worker(port, conversation_ids)
    conn.send(await worker.connect())
    command: dict[str, Any] = await asyncio.to_thread(conn.recv)
    conn.send(await worker.watch(float(command["timeout"])))


def main(port: int, conversation_ids: list[str], conn: Connection) -> None:
    """The process entry point (a `multiprocessing` target)."""
    asyncio.run(_main(port, conversation_ids, conn))
