"""One case of `bench/cluster.py`: a deployment (`DEPLOYMENTS`: SQLite in one process, or
1-3 processes on one fresh PostgreSQL database) and one subscriber count, measured for
live delivery at an offered rate, with the client worker processes of
`bench.fanout_client` doing the receiving.

Subscribers are spread evenly over the server processes; each client worker holds
connections to one server process only, so latency is also known per process (process
1 appends; the others hear of its events through NOTIFY and read them from the log).
"""

from __future__ import annotations

import contextlib
import math
import os
import shutil
import tempfile
import time
from array import array
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench import cluster_server
from bench.cluster_postgres import fresh_database, postgres_cpu, postgres_cpu_since, postgres_pids
from bench.common import Metrics, count, latency, log, ms
from bench.machine import cpu_seconds, machine_busy_seconds
from bench.processes import Peer, Profiler, free_port

WARM_UP_EVENTS = 5
SETTLE_SECONDS = 1.0
PY_SPY_RATE = 250
VIOLATIONS = ("gaps", "duplicates", "reordered", "missing")


@dataclass(frozen=True, slots=True)
class Deployment:
    label: str
    processes: int
    postgres: bool
    title: str


DEPLOYMENTS = {
    "sqlite": Deployment("sqlite", 1, False, "SQLite, 1 process"),
    "pg1": Deployment("pg1", 1, True, "PostgreSQL, 1 process"),
    "pg2": Deployment("pg2", 2, True, "PostgreSQL, 2 processes"),
    "pg3": Deployment("pg3", 3, True, "PostgreSQL, 3 processes"),
}


@dataclass(frozen=True, slots=True)
class Config:
    deployments: tuple[str, ...]
    subscribers: tuple[int, ...]
    rate: float
    seconds: float
    per_worker: int
    length: int
    idle_timeout: float
    transport: str = "ws"
    """What the subscribers speak: ``ws`` (plain WebSocket) or ``sio`` (Socket.IO)."""


def split(total: int, parts: int) -> list[int]:
    """``total`` spread evenly over ``parts`` (the first ones take the remainder)."""
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def worker_shares(subscribers: int, processes: int, per_worker: int) -> list[tuple[int, int]]:
    """(server process index, connections) for each client worker: every process's share
    over as few workers as ``per_worker`` allows, each worker on one process."""
    shares = []
    for index, share in enumerate(split(subscribers, processes)):
        workers = max(1, math.ceil(share / per_worker))
        shares += [(index, part) for part in split(share, workers) if part]
    return shares


class Case:
    """One deployment, one subscriber count: start the servers, warm up, connect, measure
    the rate case, stop everything (and drop the database)."""

    def __init__(
        self,
        config: Config,
        deployment: Deployment,
        subscribers: int,
        workers: list[Peer],
        root: Path,
    ) -> None:
        self.config = config
        self.deployment = deployment
        self.subscribers = subscribers
        self.shares = worker_shares(subscribers, deployment.processes, config.per_worker)
        self.workers = workers[: len(self.shares)]
        self.root = root
        self.prefix = f"{deployment.label}.{subscribers}"

    def run(self, profile_dir: Path | None) -> Metrics:
        load_before = os.getloadavg()[0]
        log(f"  load average before: {load_before:.2f}")
        with self._servers() as servers:
            metrics = self._measure(servers, profile_dir)
        load_after = os.getloadavg()[0]
        log(f"  load average after: {load_after:.2f}")
        metrics[f"{self.prefix}.load_before"] = load_before
        metrics[f"{self.prefix}.load_after"] = load_after
        return metrics

    @contextlib.contextmanager
    def _servers(self) -> Iterator[list[tuple[Peer, int]]]:
        data_dir = Path(tempfile.mkdtemp(prefix=f"{self.deployment.label}-", dir=self.root))
        database = fresh_database() if self.deployment.postgres else contextlib.nullcontext(None)
        servers: list[tuple[Peer, int]] = []
        try:
            with database as url:
                try:
                    for index in range(self.deployment.processes):
                        port = free_port()
                        peer = Peer(
                            cluster_server.main, port, url, str(data_dir / str(index)),
                            self.config.length, index == 0,
                        )  # fmt: skip
                        servers.append((peer, port))
                        answer = peer.receive(60)
                        if index == 0:
                            self.conversation_id = str(answer["conversation_id"])
                    yield servers
                finally:
                    for worker in self.workers:
                        worker.ask({"op": "close"})
                    for peer, _ in servers:
                        peer.stop()
        finally:
            shutil.rmtree(data_dir, ignore_errors=True)

    def _measure(self, servers: list[tuple[Peer, int]], profile_dir: Path | None) -> Metrics:
        appender = servers[0][0]
        # Warm-up: one subscriber on each process, a few events, gone again.
        warm = self.workers[0]
        self._connect(appender, [(warm, port, 1) for _, port in servers])
        self._case(appender, servers, [warm], WARM_UP_EVENTS, None)
        warm.ask({"op": "close"})
        for peer, _ in servers:
            _await_subscribers(peer, 0)
        time.sleep(SETTLE_SECONDS)

        plan = [
            (worker, servers[index][1], share)
            for worker, (index, share) in zip(self.workers, self.shares, strict=True)
        ]
        metrics: Metrics = {f"{self.prefix}.connect_s": self._connect(appender, plan)}
        for (peer, _), share in zip(servers, split(self.subscribers, len(servers)), strict=True):
            _await_subscribers(peer, share)
        time.sleep(SETTLE_SECONDS)

        events = round(self.config.rate * self.config.seconds)
        profilers = [
            Profiler(profile_dir / f"{self.prefix}.p{index + 1}.txt" if profile_dir else None,
                     rate=PY_SPY_RATE, gil=False)
            for index in range(len(servers))
        ]  # fmt: skip
        for profiler, (peer, _) in zip(profilers, servers, strict=True):
            profiler.start(peer.pid)
        try:
            found = self._case(appender, servers, self.workers, events, self.config.rate)
        finally:
            for profiler in profilers:
                profiler.stop()
        metrics.update({f"{self.prefix}.{key}": value for key, value in found.items()})
        log(
            f"  {self.prefix}: appended {found['appended_per_s']:.1f}/s, "
            f"delivered {count(found['delivered_per_s'])}/s, p50 {ms(found['p50'])} / "
            f"p99 {ms(found['p99'])} ms, violations {found['violations']:.0f}"
        )
        return metrics

    def _connect(self, appender: Peer, plan: list[tuple[Peer, int, int]]) -> float:
        """Open ``plan``'s connections (worker, server port, how many), all at once;
        seconds until all are open. A worker answers each command with its total."""
        latest = appender.ask({"op": "latest"})["latest"]
        started = time.perf_counter()
        for worker, port, share in plan:
            worker.send(
                {
                    "op": "connect",
                    "transport": self.config.transport,
                    "port": port,
                    "conversation_id": self.conversation_id,
                    "latest": latest,
                    "count": share,
                }
            )
        totals: dict[int, int] = {}
        for worker, _, share in plan:
            totals[worker.pid] = totals.get(worker.pid, 0) + share
            answer = worker.receive(300)
            if answer["connected"] != totals[worker.pid] or answer["errors"]:
                raise RuntimeError(
                    f"{answer['connected']}/{totals[worker.pid]} connected: {answer['errors']}"
                )
        return time.perf_counter() - started

    def _case(
        self,
        appender: Peer,
        servers: list[tuple[Peer, int]],
        workers: list[Peer],
        events: int,
        rate: float | None,
    ) -> Metrics:
        """Process 1 appends ``events`` at ``rate`` (back to back: None); every worker's
        connections expect exactly those."""
        first = appender.ask({"op": "latest"})["latest"] + 1
        last = first + events - 1
        duration = events / rate if rate else 0.0
        for worker in workers:
            worker.send(
                {
                    "op": "expect",
                    "first": first,
                    "last": last,
                    "timeout": duration + 300,
                    "idle_timeout": self.config.idle_timeout,
                    "start_grace": duration + 5,
                }
            )
        for worker in workers:
            worker.receive(30)  # armed
        pg_pids = postgres_pids() if self.deployment.postgres else set()
        pg_before = postgres_cpu(pg_pids)
        busy_before, wall_before = machine_busy_seconds(), time.monotonic()
        servers_before = [cpu_seconds(peer.pid) for peer, _ in servers]
        clients_before = sum(cpu_seconds(worker.pid) for worker in workers)
        published = appender.ask(
            {"op": "publish", "count": events, "rate": rate}, timeout=duration + 600
        )
        tallies = [worker.receive(duration + 600) for worker in workers]
        wall = time.monotonic() - wall_before
        server_cpu = [
            cpu_seconds(peer.pid) - before
            for (peer, _), before in zip(servers, servers_before, strict=True)
        ]
        clients = sum(cpu_seconds(worker.pid) for worker in workers) - clients_before
        pg_cpu = postgres_cpu_since(pg_before) if self.deployment.postgres else 0.0
        others = machine_busy_seconds() - busy_before - sum(server_cpu) - clients - pg_cpu

        samples = array("d")
        by_process: dict[int, array[float]] = {}
        for (index, _), tally in zip(self.shares, tallies, strict=False):
            by_process.setdefault(index, array("d")).frombytes(tally["latencies_ms"])
        for tally in tallies:
            samples.frombytes(tally["latencies_ms"])
        received = sum(tally["received"] for tally in tallies)
        connections = sum(tally["connections"] for tally in tallies)
        finished = max(tally["last_received_at"] for tally in tallies)
        spent = published["finished"] - published["started"]
        violations = sum(tally[key] for tally in tallies for key in VIOLATIONS)
        found: Metrics = {
            "events": events,
            "appended_per_s": events / spent if spent > 0 else math.nan,
            "delivered_per_s": received / (finished - published["started"]) if received else 0.0,
            **{key.rpartition(".")[2]: value for key, value in latency("x", samples).items()},
            **{
                f"append_{key.rpartition('.')[2]}": value
                for key, value in latency("x", published["emit_ms"]).items()
            },
            "violations": violations + (connections - sum(t["complete"] for t in tallies)),
            **{key: float(sum(tally[key] for tally in tallies)) for key in VIOLATIONS},
            "server_cpus": sum(server_cpu) / wall,
            "postgres_cpus": pg_cpu / wall,
            "client_cpus": clients / wall,
            "other_cpus": max(0.0, others / wall),
            "server_us_per_delivery": sum(server_cpu) / received * 1e6 if received else math.nan,
        }
        for index, cpu in enumerate(server_cpu):
            found[f"p{index + 1}.cpus"] = cpu / wall
        if len(workers) == len(self.shares):
            for index, values in by_process.items():
                found[f"p{index + 1}.p99"] = latency("x", values)["x.p99"]
        return found


def _await_subscribers(peer: Peer, expected: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while (found := peer.ask({"op": "subscribers"})["subscribers"]) != expected:
        if time.monotonic() > deadline:
            raise TimeoutError(f"{found} subscribers on a server, expected {expected}")
        time.sleep(0.1)
