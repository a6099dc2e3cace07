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

This file runs it; one server and subscriber count is a `bench.fanout_session`, the
probe event is `bench.fanout_probe`, the targets and tables are `bench.fanout_report`.
"""

from __future__ import annotations

import argparse
import math
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
# Run as `python -m bench.<name>`, sys.path[0] is the working directory: the same fix.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import fanout_client, plots
from bench.common import RESULTS, Metrics, environment, log, median, write_result
from bench.fanout_report import report, verdicts
from bench.fanout_session import SERVERS, VIOLATIONS, Config, Session, ours
from bench.processes import Peer


def measure_run(config: Config, root: Path, profile_dir: Path | None) -> Metrics:
    workers_needed = max(math.ceil(n / config.per_worker) for n in config.subscribers)
    workers = [Peer(fanout_client.main) for _ in range(workers_needed)]
    metrics: Metrics = {}
    try:
        for subscribers in config.subscribers:
            for label in config.servers:
                log(f"{SERVERS[label].title}, {subscribers} subscriber(s)")
                session = Session(config, SERVERS[label], subscribers, workers, root)
                metrics.update(session.run(profile_dir))
    finally:
        for worker in workers:
            worker.stop()
    return metrics


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
        length=ours().probe_length(),
        idle_timeout=args.idle_timeout,
    )
    root = Path(tempfile.mkdtemp(prefix="threadline-fanout-", dir="/tmp"))
    try:
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            runs.append(measure_run(config, root, args.py_spy))
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
            "event_bytes": ours().probe_bytes(config.length),
            "thought_length": config.length,
        },
        "environment": environment(),
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle, config)],
        "runs": runs,
    }
    write_result(args.out, result, report)
    plots.draw_beside(args.out, result)


if __name__ == "__main__":
    main()
