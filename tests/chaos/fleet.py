"""A fleet of subscribers on one asyncio loop: in the harness's own process (a few
dozen, for the crash rounds) or in worker processes driven through a pipe
(`bench.processes.Peer`; the reconnect storm's thousand)."""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

from bench.processes import Peer
from tests.chaos.subscribers import Subscriber, make, sse_client

Summary = dict[str, Any]
COUNTS = (
    "subscribers", "exact", "received", "gaps", "duplicates", "reorders", "missing",
    "connections", "planned_reconnects", "failures",
)  # fmt: skip


@dataclass(frozen=True, slots=True)
class Plan:
    transport: str
    conversation_id: str
    reconnects: int | None = None
    """Planned reconnects (None: stay connected; reconnect only when the server drops it)."""
    hold: tuple[float, float] = (0.2, 2.0)


class Fleet:
    def __init__(self, url: str, seed: int = 0) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.stop = asyncio.Event()
        self.http = sse_client()
        self.subscribers: list[Subscriber] = []
        self._tasks: list[asyncio.Task[None]] = []

    def start(self, plans: list[Plan], ramp: float = 0.0) -> None:
        """Subscribe, each after a random delay up to ``ramp`` seconds."""
        for plan in plans:
            subscriber = make(plan.transport, self.url, plan.conversation_id, self.stop, self.http)
            self.subscribers.append(subscriber)
            delay = self.rng.uniform(0, ramp)
            rng = random.Random(self.rng.random())
            self._tasks.append(asyncio.create_task(self._follow(subscriber, plan, delay, rng)))

    async def _follow(
        self, subscriber: Subscriber, plan: Plan, delay: float, rng: random.Random
    ) -> None:
        await asyncio.sleep(delay)
        await subscriber.follow(reconnects=plan.reconnects, hold=plan.hold, rng=rng)

    async def close(self) -> None:
        """Disconnect every subscriber (idempotent)."""
        self.stop.set()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.http.aclose()

    def progress(self) -> dict[str, int]:
        return {
            "connections": sum(s.connections for s in self.subscribers),
            "planned_reconnects": sum(s.planned_reconnects for s in self.subscribers),
            "received": sum(s.sequence.received for s in self.subscribers),
        }

    async def finish(self, targets: dict[str, int], within: float) -> Summary:
        """Wait until every subscriber has seen its conversation's last id (``targets``)
        or ``within`` seconds passed, then disconnect all; what each transport saw."""
        deadline = time.monotonic() + within
        while time.monotonic() < deadline:
            if all(s.sequence.last >= targets[s.conversation_id] for s in self.subscribers):
                break
            await asyncio.sleep(0.1)
        await self.close()
        summary: Summary = {"errors": []}
        for subscriber in self.subscribers:
            tally = subscriber.sequence.tally(targets[subscriber.conversation_id])
            counts = Counter(
                subscribers=1,
                exact=int(not any(tally[k] for k in ("gaps", "duplicates", "reorders", "missing"))),
                connections=subscriber.connections,
                planned_reconnects=subscriber.planned_reconnects,
                failures=subscriber.failures,
                **tally,
            )
            per_transport = summary.setdefault(subscriber.transport, dict.fromkeys(COUNTS, 0))
            for key in COUNTS:
                per_transport[key] += counts[key]
            if tally["missing"] or tally["gaps"] or tally["duplicates"] or tally["reorders"]:
                summary["errors"].append(
                    f"{subscriber.transport} {subscriber.conversation_id[:8]}: {tally}, last seen "
                    f"{subscriber.sequence.last} of {targets[subscriber.conversation_id]}"
                )
            summary["errors"] += [f"{subscriber.transport}: {e}" for e in subscriber.errors[:1]]
        summary["errors"] = summary["errors"][:12]
        return summary


def merge(summaries: list[Summary]) -> Summary:
    merged: Summary = {"errors": []}
    for summary in summaries:
        for key, value in summary.items():
            if key == "errors":
                merged["errors"] += value
            else:
                into = merged.setdefault(key, dict.fromkeys(COUNTS, 0))
                for name in COUNTS:
                    into[name] += value[name]
    merged["errors"] = merged["errors"][:12]
    return merged


def totals(summary: Summary) -> dict[str, int]:
    """The counts over every transport."""
    result = dict.fromkeys(COUNTS, 0)
    for key, value in summary.items():
        if key != "errors":
            for name in COUNTS:
                result[name] += value[name]
    return result


# -- worker processes ------------------------------------------------------------------


async def _serve(url: str, seed: int, conn: Connection) -> None:
    fleet = Fleet(url, seed)
    while True:
        command: dict[str, Any] = await asyncio.to_thread(conn.recv)
        match command["op"]:
            case "start":
                fleet.start([Plan(*plan) for plan in command["plans"]], command["ramp"])
                conn.send({"started": len(command["plans"])})
            case "progress":
                conn.send(fleet.progress())
            case "finish":
                conn.send(await fleet.finish(command["targets"], command["within"]))
            case "stop":
                return


def _worker(url: str, seed: int, conn: Connection) -> None:
    asyncio.run(_serve(url, seed, conn))


class RemoteFleet:
    """Subscribers spread over ``workers`` processes."""

    def __init__(self, url: str, workers: int, seed: int = 0) -> None:
        self.peers = [Peer(_worker, url, seed + index) for index in range(workers)]

    def start(self, plans: list[Plan], ramp: float) -> None:
        shares = [plans[index :: len(self.peers)] for index in range(len(self.peers))]
        for peer, share in zip(self.peers, shares, strict=True):
            peer.send({"op": "start", "plans": [list(_as_tuple(p)) for p in share], "ramp": ramp})
        for peer in self.peers:
            peer.receive(60)

    def progress(self) -> dict[str, int]:
        answers = [peer.ask({"op": "progress"}) for peer in self.peers]
        return {key: sum(a[key] for a in answers) for key in answers[0]}

    def finish(self, targets: dict[str, int], within: float) -> Summary:
        for peer in self.peers:
            peer.send({"op": "finish", "targets": targets, "within": within})
        return merge([peer.receive(within + 60) for peer in self.peers])

    def close(self) -> None:
        for peer in self.peers:
            peer.stop(10)


def _as_tuple(plan: Plan) -> tuple[Any, ...]:
    return (plan.transport, plan.conversation_id, plan.reconnects, plan.hold)
