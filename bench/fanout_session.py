"""One fan-out session of `bench/fanout.py`: a fresh server process and one subscriber
count, measured for memory and then in every mode (`MODES`), with the client worker
processes (`bench.fanout_client`) doing the receiving.

Imports nothing of threadline at module level: spawned processes import the entry point
again, and the bare server and the clients must not carry threadline's imports.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from array import array
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType

from bench import fanout_bare
from bench.common import MIB, Metrics, count, latency, log, ms
from bench.machine import cpu_seconds, machine_busy_seconds, rss_bytes
from bench.processes import Peer, Profiler, free_port

WARM_UP_EVENTS = 5
SETTLE_SECONDS = 1.0
PY_SPY_RATE = 250
VIOLATIONS = ("gaps", "duplicates", "reordered", "missing")
MODES = ("rate", "flat")


@dataclass(frozen=True, slots=True)
class Server:
    label: str
    kind: str
    """``ours`` or ``bare`` (`bench.fanout_server`)."""
    transport: str
    """What the clients speak (`bench.fanout_client`)."""
    title: str


SERVERS = {
    "sio": Server("sio", "ours", "sio", "threadline Socket.IO"),
    "ws": Server("ws", "ours", "ws", "threadline WebSocket"),
    "bare": Server("bare", "bare", "ws", "bare websockets.broadcast"),
    "sio-lib": Server("sio-lib", "ours", "sio-lib", "threadline Socket.IO, python-socketio client"),
}


@dataclass(frozen=True, slots=True)
class Config:
    servers: tuple[str, ...]
    subscribers: tuple[int, ...]
    rate: float
    seconds: float
    flat_deliveries: int
    flat_events: tuple[int, int]
    per_worker: int
    length: int
    idle_timeout: float


def ours() -> ModuleType:
    """`bench.fanout_server`, imported on first use (see the module's docstring)."""
    from bench import fanout_server

    return fanout_server


class Session:
    """One server process, one subscriber count: memory, then every mode."""

    def __init__(
        self, config: Config, server: Server, subscribers: int, workers: list[Peer], root: Path
    ) -> None:
        self.config = config
        self.server = server
        self.subscribers = subscribers
        self.workers = workers[: max(1, math.ceil(subscribers / config.per_worker))]
        self.root = root
        self.prefix = f"{server.label}.{subscribers}"

    def run(self, profile_dir: Path | None) -> Metrics:
        """Measure; with ``profile_dir``, py-spy records the server during each mode."""
        port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix=f"{self.server.label}-", dir=self.root))
        if self.server.kind == "ours":
            peer = Peer(ours().main, port, str(data_dir), self.config.length)
        else:
            peer = Peer(fanout_bare.main, port, ours().probe_template(self.config.length))
        try:
            self.conversation_id = str(peer.receive(60)["conversation_id"])
            return self._measure(peer, port, profile_dir)
        finally:
            for worker in self.workers:
                worker.ask({"op": "close"})
            peer.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    def _measure(self, peer: Peer, port: int, profile_dir: Path | None) -> Metrics:
        metrics: Metrics = {}
        # Warm-up: one subscriber, a few events, gone again; then the server is idle.
        self._connect(peer, port, [(self.workers[0], 1)])
        self._case(peer, self.workers[:1], WARM_UP_EVENTS, None)
        self.workers[0].ask({"op": "close"})
        self._await_subscribers(peer, 0)
        time.sleep(SETTLE_SECONDS)
        idle = rss_bytes(peer.pid)

        shares = _split(self.subscribers, len(self.workers))
        metrics[f"{self.prefix}.connect_s"] = self._connect(
            peer, port, list(zip(self.workers, shares, strict=True))
        )
        self._await_subscribers(peer, self.subscribers)
        time.sleep(SETTLE_SECONDS)
        connected = rss_bytes(peer.pid)
        metrics[f"{self.prefix}.rss_idle_mib"] = idle / MIB
        metrics[f"{self.prefix}.rss_connected_mib"] = connected / MIB
        metrics[f"{self.prefix}.kib_per_subscriber"] = (connected - idle) / 1024 / self.subscribers

        config = self.config
        flat = config.flat_deliveries // self.subscribers
        counts = {
            "rate": round(config.rate * config.seconds),
            "flat": min(max(flat, config.flat_events[0]), config.flat_events[1]),
        }
        for mode in MODES:
            name = f"{self.prefix}.{mode}"
            output = profile_dir / f"{name}.txt" if profile_dir else None
            profiler = Profiler(output, rate=PY_SPY_RATE, gil=False)
            profiler.start(peer.pid)
            try:
                found = self._case(
                    peer, self.workers, counts[mode], config.rate if mode == "rate" else None
                )
            finally:
                profiler.stop()
            metrics.update({f"{name}.{key}": value for key, value in found.items()})
            log(
                f"  {self.server.label} x{self.subscribers} {mode}: "
                f"p50 {ms(found['p50'])} / p99 {ms(found['p99'])} ms, "
                f"{count(found['delivered_per_s'])} deliveries/s, "
                f"violations {found['violations']:.0f}"
            )
        metrics[f"{self.prefix}.rss_peak_mib"] = rss_bytes(peer.pid, "VmHWM") / MIB
        return metrics

    def _connect(self, peer: Peer, port: int, shares: list[tuple[Peer, int]]) -> float:
        latest = peer.ask({"op": "latest"})["latest"]
        started = time.perf_counter()
        for worker, share in shares:
            worker.send(
                {
                    "op": "connect",
                    "transport": self.server.transport,
                    "port": port,
                    "conversation_id": self.conversation_id,
                    "latest": latest,
                    "count": share,
                }
            )
        for worker, share in shares:
            answer = worker.receive(300)
            if answer["connected"] != share or answer["errors"]:
                raise RuntimeError(f"{answer['connected']}/{share} connected: {answer['errors']}")
        return time.perf_counter() - started

    def _await_subscribers(self, peer: Peer, expected: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while (found := peer.ask({"op": "subscribers"})["subscribers"]) != expected:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{found} subscribers on the server, expected {expected}")
            time.sleep(0.1)

    def _case(self, peer: Peer, workers: list[Peer], events: int, rate: float | None) -> Metrics:
        first = peer.ask({"op": "latest"})["latest"] + 1
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
        busy_before, wall_before = machine_busy_seconds(), time.monotonic()
        cpu_before = cpu_seconds(peer.pid)
        clients_before = sum(cpu_seconds(worker.pid) for worker in workers)
        published = peer.ask(
            {"op": "publish", "count": events, "rate": rate},
            timeout=duration + 600,
        )
        tallies = [worker.receive(duration + 600) for worker in workers]
        cpu = cpu_seconds(peer.pid) - cpu_before
        clients = sum(cpu_seconds(worker.pid) for worker in workers) - clients_before
        others = machine_busy_seconds() - busy_before - cpu - clients
        wall = time.monotonic() - wall_before

        samples = array("d")
        for tally in tallies:
            samples.frombytes(tally["latencies_ms"])
        received = sum(tally["received"] for tally in tallies)
        connections = sum(tally["connections"] for tally in tallies)
        finished = max(tally["last_received_at"] for tally in tallies)
        spent = published["finished"] - published["started"]
        violations = sum(tally[key] for tally in tallies for key in VIOLATIONS)
        return {
            "events": events,
            "appended_per_s": events / spent if spent > 0 else math.nan,
            "delivered_per_s": received / (finished - published["started"]) if received else 0.0,
            **{key.rpartition(".")[2]: value for key, value in latency("x", samples).items()},
            **{
                f"append_{key.rpartition('.')[2]}": value
                for key, value in latency("x", published["emit_ms"]).items()
            },
            "server_us_per_delivery": cpu / received * 1e6 if received else math.nan,
            "client_us_per_delivery": clients / received * 1e6 if received else math.nan,
            "other_cpus": max(0.0, others / wall),
            "violations": violations + (connections - sum(t["complete"] for t in tallies)),
            **{key: float(sum(tally[key] for tally in tallies)) for key in VIOLATIONS},
        }


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]
