"""Fan-out benchmark: live delivery of one conversation's appends to many subscribers,
over Socket.IO and plain WebSocket, next to a bare `websockets` broadcast server.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/fanout.py [--quick] [--runs N] [--subscribers 1,100,1000]
                                     [--servers sio,ws,bare,sio-lib] [--py-spy DIR]

For each server and subscriber count a fresh server process is started:
`bench/fanout_server.py` (threadline's app under uvicorn, configured like ``threadline
serve``) or `bench/fanout_bare.py` (the bare broadcast server). Client worker processes
(`bench/fanout_client.py`) open the subscriber connections, at most ``--per-worker``
each. One warm-up subscriber receives a few events and leaves; then:

* memory: the server's RSS idle (after the warm-up) and with every subscriber connected
  and idle (their difference / N is what one idle subscriber costs), and its peak RSS
  over the session;
* (a) ``rate``: ``--rate`` events/s for ``--seconds``;
* (b) ``flat``: back to back (the next append starts when the previous one returned),
  ``--flat-deliveries`` / N events, within ``--flat-min`` and ``--flat-max``.

The server process appends each event with ``storage.append`` (the bare server builds
the same bytes and broadcasts them); each event carries the wall-clock time of that
call, and clients take append -> receive latency on arrival (same machine, same clock).
Every connection checks that it got every event exactly once and in id order. Server
CPU per delivery is the server process's CPU time (all threads, SQLite's included)
over the case, divided by the deliveries.

The clients share the machine's CPUs with the server; they are kept cheap (sans-I/O
connections, no task per message) and identical for every server, so the ratios to the
bare server are the figures to read. With ``--runs R`` every figure is the median of R
runs (error counts: the worst run) and the targets are checked on those.
"""

from __future__ import annotations

import argparse
import math
import multiprocessing
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from array import array
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import ModuleType
from typing import Any

# Run as `python bench/fanout.py`, this file's directory comes first on sys.path, where
# bench/storage.py would shadow the `storage` package and bench/http.py the standard
# library's `http`: put the repository root there instead.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench import fanout_bare, fanout_client
from bench.common import (
    EVENT_BYTES,
    RESULTS,
    Metrics,
    Verdict,
    count,
    cpu_seconds,
    environment,
    environment_line,
    free_port,
    latency,
    log,
    machine_busy_seconds,
    median,
    ms,
    ratio,
    render,
    rss_bytes,
    stamped_thought,
    verdict_lines,
)

MIB = 1024 * 1024
WARM_UP_EVENTS = 5
SETTLE_SECONDS = 1.0
VIOLATIONS = ("gaps", "duplicates", "reordered", "missing")


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
MODES = ("rate", "flat")


class Peer:
    """A spawned process and the pipe the orchestrator drives it through."""

    def __init__(self, target: Callable[..., None], *args: Any) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process: BaseProcess = context.Process(target=target, args=(*args, child), daemon=True)
        self.process.start()
        child.close()

    @property
    def pid(self) -> int:
        assert self.process.pid is not None
        return self.process.pid

    def send(self, command: dict[str, Any]) -> None:
        self.conn.send(command)

    def receive(self, timeout: float) -> dict[str, Any]:
        if not self.conn.poll(timeout):
            raise TimeoutError(f"process {self.pid} did not answer within {timeout:.0f} s")
        answer: dict[str, Any] = self.conn.recv()
        return answer

    def ask(self, command: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
        self.send(command)
        return self.receive(timeout)

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.is_alive():
            try:
                self.send({"op": "stop"})
                self.process.join(timeout)
            except (BrokenPipeError, OSError):
                pass
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        self.conn.close()


class Profiler:
    """py-spy recording the server while events are delivered (``--py-spy``)."""

    def __init__(self, directory: Path | None) -> None:
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self, pid: int, name: str) -> None:
        if self._directory is None:
            return
        self._directory.mkdir(parents=True, exist_ok=True)
        self._process = subprocess.Popen(
            ["py-spy", "record", "--pid", str(pid), "--rate", "250", "--nonblocking",
             "--threads", "--format", "raw", "--output", str(self._directory / f"{name}.txt")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )  # fmt: skip

    def stop(self) -> None:
        if self._process is not None:
            self._process.send_signal(signal.SIGINT)
            self._process.wait(30)
            self._process = None


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

    def run(self, profiler: Profiler) -> Metrics:
        port = free_port()
        data_dir = Path(tempfile.mkdtemp(prefix=f"{self.server.label}-", dir=self.root))
        if self.server.kind == "ours":
            peer = Peer(_ours().main, port, str(data_dir), self.config.length)
        else:
            peer = Peer(fanout_bare.main, port, _ours().probe_template(self.config.length))
        try:
            self.conversation_id = str(peer.receive(60)["conversation_id"])
            return self._measure(peer, port, profiler)
        finally:
            for worker in self.workers:
                worker.ask({"op": "close"})
            peer.stop()
            shutil.rmtree(data_dir, ignore_errors=True)

    def _measure(self, peer: Peer, port: int, profiler: Profiler) -> Metrics:
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
            profiler.start(peer.pid, f"{self.prefix}.{mode}")
            try:
                found = self._case(
                    peer, self.workers, counts[mode], config.rate if mode == "rate" else None
                )
            finally:
                profiler.stop()
            metrics.update({f"{self.prefix}.{mode}.{key}": value for key, value in found.items()})
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


def _ours() -> ModuleType:
    """`bench.fanout_server`, imported on first use: spawned processes import this module
    again, and the bare server and the clients must not carry threadline's imports."""
    from bench import fanout_server

    return fanout_server


def _split(total: int, parts: int) -> list[int]:
    return [total // parts + (1 if index < total % parts else 0) for index in range(parts)]


def probe_length() -> int:
    """The thought length that makes a stored probe event about `EVENT_BYTES` long (the
    thought is in it twice: in ``args`` and in ``message``)."""
    shortest = len(stamped_thought(0.0, 0))
    return shortest + max(0, EVENT_BYTES - _ours().probe_bytes(0)) // 2


def measure_run(config: Config, root: Path, profiler: Profiler) -> Metrics:
    workers_needed = max(math.ceil(n / config.per_worker) for n in config.subscribers)
    workers = [Peer(fanout_client.main) for _ in range(workers_needed)]
    metrics: Metrics = {}
    try:
        for subscribers in config.subscribers:
            for label in config.servers:
                log(f"{SERVERS[label].title}, {subscribers} subscriber(s)")
                session = Session(config, SERVERS[label], subscribers, workers, root)
                metrics.update(session.run(profiler))
    finally:
        for worker in workers:
            worker.stop()
    return metrics


# -- targets and report ----------------------------------------------------------------


def verdicts(m: Metrics, config: Config) -> list[Verdict]:
    found: list[Verdict] = []
    ours = [label for label in config.servers if SERVERS[label].kind == "ours"]
    biggest = max(config.subscribers)
    for label in ours:
        title = SERVERS[label].title
        if 100 in config.subscribers:
            p99 = m[f"{label}.100.rate.p99"]
            found.append(
                Verdict(p99 <= 10, f"{title}: p99 <= 10 ms at 100 subscribers", f"{p99:.2f} ms")
            )
            bare = m.get("bare.100.rate.p99")
            if bare is not None:
                found.append(
                    Verdict(
                        p99 <= 2 * bare,
                        f"{title}: p99 <= 2x bare broadcast at 100 subscribers",
                        f"{p99:.2f} ms = {p99 / bare:.2f}x of {bare:.2f} ms",
                    )
                )
        bad = sum(m[f"{label}.{n}.{mode}.violations"] for n in config.subscribers for mode in MODES)
        found.append(
            Verdict(
                bad == 0,
                f"{title}: every subscriber got every event exactly once, in order",
                f"{bad:.0f} violations (gaps + duplicates + reordered + missing)",
            )
        )
        per = m[f"{label}.{biggest}.kib_per_subscriber"]
        found.append(
            Verdict(
                per <= 64,
                f"{title}: idle memory per subscriber <= 64 KiB ({biggest})",
                f"{per:.1f} KiB",
            )
        )
        idle = max(m[f"{label}.{n}.rss_idle_mib"] for n in config.subscribers)
        found.append(
            Verdict(
                idle * MIB < 100e6,
                f"{title}: server RSS idle < 100 MB",
                f"{idle * MIB / 1e6:.1f} MB",
            )
        )
    return found


def report(result: dict[str, Any]) -> str:
    config, m = result["config"], result["median"]
    servers, subscribers = config["servers"], config["subscribers"]
    delivery_rows = []
    for n in subscribers:
        for mode in MODES:
            for label in servers:
                p = f"{label}.{n}.{mode}"
                if f"{p}.p99" not in m:
                    continue
                bare = f"bare.{n}.{mode}"
                ours = SERVERS[label].kind == "ours" and f"{bare}.p99" in m
                delivery_rows.append(
                    [
                        f"{label} x{n} {mode}",
                        count(m[f"{p}.events"]),
                        count(m[f"{p}.appended_per_s"]),
                        count(m[f"{p}.delivered_per_s"]),
                        ms(m[f"{p}.p50"]),
                        ms(m[f"{p}.p99"]),
                        ms(m[f"{p}.max"]),
                        "yes" if m[f"{p}.violations"] == 0 else f"NO ({m[f'{p}.violations']:.0f})",
                        ms(m[f"{p}.server_us_per_delivery"]),
                        ms(m[f"{p}.client_us_per_delivery"]),
                        ms(m[f"{p}.append_p50"]),
                        f"{m[f'{p}.other_cpus']:.2f}",
                        ratio(m[f"{p}.p50"], m.get(f"{bare}.p50")) if ours else "",
                        ratio(m[f"{p}.p99"], m.get(f"{bare}.p99")) if ours else "",
                        ratio(m[f"{p}.delivered_per_s"], m.get(f"{bare}.delivered_per_s"))
                        if ours
                        else "",
                        ratio(
                            m[f"{p}.server_us_per_delivery"],
                            m.get(f"{bare}.server_us_per_delivery"),
                        )
                        if ours
                        else "",
                    ]
                )
    memory_rows = []
    for n in subscribers:
        for label in servers:
            p = f"{label}.{n}"
            if f"{p}.rss_idle_mib" not in m:
                continue
            ours = SERVERS[label].kind == "ours" and f"bare.{n}.kib_per_subscriber" in m
            memory_rows.append(
                [
                    f"{label} x{n}",
                    f"{m[f'{p}.rss_idle_mib']:.1f}",
                    f"{m[f'{p}.rss_connected_mib']:.1f}",
                    f"{m[f'{p}.kib_per_subscriber']:.1f}",
                    f"{m[f'{p}.rss_peak_mib']:.0f}",
                    ratio(m[f"{p}.kib_per_subscriber"], m.get(f"bare.{n}.kib_per_subscriber"))
                    if ours
                    else "",
                    f"{m[f'{p}.connect_s']:.2f}",
                ]
            )
    flat_range = config["flat_events"]
    lines = [
        f"threadline fan-out benchmark: 1 conversation, ~{config['event_bytes']} B events; "
        f"rate = {config['rate']:g}/s for {config['seconds']:g} s, flat = back to back, "
        f"{config['flat_deliveries']:,} deliveries / N events "
        f"(within {flat_range[0]}-{flat_range[1]}); "
        f"median of {len(result['runs'])} run(s)",
        environment_line(result["environment"]),
        "servers: " + "; ".join(f"{label} = {SERVERS[label].title}" for label in servers),
        "",
        render(
            "(a) live delivery: append -> receive latency in ms; CPU of the server and of all "
            "client processes in µs per delivery; append = the storage.append call (bare: "
            "build + broadcast) in ms; others = CPUs busy with other processes of the machine "
            "(noise)",
            [
                "",
                "events",
                "appended/s",
                "delivered/s",
                "p50",
                "p99",
                "max",
                "exactly once",
                "srv µs/dlv",
                "cli µs/dlv",
                "append",
                "others",
                "p50/bare",
                "p99/bare",
                "dlv/bare",
                "µs/bare",
            ],
            delivery_rows,
        ),
        "",
        render(
            "(b) server memory, MiB: RSS idle (after warm-up), with N idle subscribers, and "
            "its peak over the session (VmHWM)",
            ["", "RSS idle", "RSS N subs", "KiB/sub", "peak RSS", "KiB/sub vs bare", "connect s"],
            memory_rows,
        ),
        "",
        "targets (on the medians)",
        *verdict_lines(result["targets"]),
    ]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 and 100 subscribers, short cases")
    parser.add_argument("--servers", default="sio,ws,bare", help=f"of {','.join(SERVERS)}")
    parser.add_argument("--subscribers", default="1,100,1000")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s of the rate case")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of the rate case")
    parser.add_argument("--flat-deliveries", type=int, default=300_000)
    parser.add_argument("--flat-min", type=int, default=200, help="fewest events of a flat case")
    parser.add_argument("--flat-max", type=int, default=5_000, help="most events of a flat case")
    parser.add_argument(
        "--per-worker", type=int, default=250, help="connections per client process"
    )
    parser.add_argument("--idle-timeout", type=float, default=15.0, help="give up after silence")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, help="record each case's server with py-spy here")
    parser.add_argument("--out", type=Path, default=RESULTS / "fanout.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.seconds = "1,100", 5.0
        args.flat_deliveries, args.flat_max = 100_000, 2_000
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    servers = tuple(args.servers.split(","))
    if unknown := set(servers) - set(SERVERS):
        raise SystemExit(f"unknown servers: {', '.join(sorted(unknown))}")
    config = Config(
        servers=servers,
        subscribers=tuple(int(n) for n in args.subscribers.split(",")),
        rate=args.rate,
        seconds=args.seconds,
        flat_deliveries=args.flat_deliveries,
        flat_events=(args.flat_min, args.flat_max),
        per_worker=args.per_worker,
        length=probe_length(),
        idle_timeout=args.idle_timeout,
    )
    root = Path(tempfile.mkdtemp(prefix="threadline-fanout-", dir="/tmp"))
    profiler = Profiler(args.py_spy)
    try:
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            runs.append(measure_run(config, root, profiler))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    middle = median(runs, worst=(".violations", *(f".{key}" for key in VIOLATIONS)))
    result = {
        "config": {
            "servers": list(servers),
            "subscribers": list(config.subscribers),
            "rate": config.rate,
            "seconds": config.seconds,
            "flat_deliveries": config.flat_deliveries,
            "flat_events": list(config.flat_events),
            "per_worker": config.per_worker,
            "event_bytes": _ours().probe_bytes(config.length),
            "thought_length": config.length,
        },
        "environment": environment(),
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle, config)],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
