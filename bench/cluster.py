"""Cluster benchmark (issue 14): live delivery of one busy conversation to many
subscribers from 1, 2 and 3 server processes sharing one PostgreSQL database, next to
the single-process SQLite server; and PostgreSQL append throughput next to raw batched
inserts into the same table.

Run by hand, never by the tests (from the repository root; PostgreSQL as
`scripts/services` starts it, or ``THREADLINE_TEST_POSTGRES``):

    .venv/bin/python bench/cluster.py [--quick] [--runs N] [--subscribers 100,1000]
                                      [--deployments sqlite,pg1,pg2,pg3] [--transport ws|sio]
                                      [--py-spy DIR]

(a) For each deployment and subscriber count, fresh server processes
(`bench.cluster_server`: what ``threadline serve [--database postgresql://...]`` runs,
each on its own port) on a fresh database (``bench_<random>``, dropped after). Client
worker processes (`bench.fanout_client`: sans-I/O connections speaking the plain
WebSocket, or Socket.IO with ``--transport sio``) spread the subscribers evenly over the
processes. After a warm-up (one subscriber per process, a few events), process 1
appends ``--rate`` events/s for ``--seconds`` with ``storage.append``, each event
stamped with the wall-clock time of that call; the other processes hear of them
through NOTIFY and read them from the log. Figures: appended events/s (achieved against
offered), delivered events/s (all subscribers), append -> receive latency p50/p99 (and
p99 per process), every subscriber checked for every event exactly once in order, the
CPU of each server process, of PostgreSQL and of the clients, and the 1-minute load
average before and after every case. The load average also counts this benchmark's own
processes (the case before a case leaves it high for a minute or more); the ``others``
column, the CPU every other process took during the case, is what says whether foreign
work disturbed it.

(b) Append throughput (`bench.cluster_baseline`): ``--appenders`` tasks appending flat out
through threadline's `PostgresStorage`, then the same batch sizes as its group commit
made, as bare ``INSERT ... SELECT FROM unnest`` statements back to back; the ratio.

With ``--runs R`` every figure is the median of R runs (violation counts: the worst run),
and the targets are checked on those. The machine's 2 CPUs are shared by the servers,
PostgreSQL and the clients: run it on a quiet machine (the load averages say how quiet).
The cases are `bench.cluster_session`, the report and targets `bench.cluster_report`.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import cluster_baseline, fanout_client
from bench.cluster_postgres import server_version
from bench.cluster_report import report, verdicts
from bench.cluster_session import DEPLOYMENTS, VIOLATIONS, Case, Config, worker_shares
from bench.common import RESULTS, SERVER_PACKAGES, Metrics, environment, log, median, write_result
from bench.fanout_session import ours
from bench.processes import Peer


def measure_run(args: argparse.Namespace, config: Config, root: Path) -> Metrics:
    metrics: Metrics = {}
    if args.appenders:
        log("(b) append throughput against raw batched inserts")
        metrics["baseline.load_before"] = os.getloadavg()[0]
        log(f"  load average before: {metrics['baseline.load_before']:.2f}")
        metrics |= cluster_baseline.measure(
            args.appenders, args.conversations, args.append_seconds, config.length
        )
        metrics["baseline.load_after"] = os.getloadavg()[0]
        log(f"  load average after: {metrics['baseline.load_after']:.2f}")
    needed = max(
        len(worker_shares(n, DEPLOYMENTS[label].processes, config.per_worker))
        for label in config.deployments
        for n in config.subscribers
    )
    workers = [Peer(fanout_client.main) for _ in range(needed)]
    try:
        for subscribers in config.subscribers:
            for label in config.deployments:
                log(f"(a) {DEPLOYMENTS[label].title}, {subscribers} subscribers")
                case = Case(config, DEPLOYMENTS[label], subscribers, workers, root)
                metrics |= case.run(args.py_spy)
    finally:
        for worker in workers:
            worker.stop()
    return metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 subscribers, short cases")
    parser.add_argument("--deployments", default=",".join(DEPLOYMENTS), help="of the default")
    parser.add_argument("--subscribers", default="100,1000")
    parser.add_argument("--rate", type=float, default=20.0, help="events/s appended")
    parser.add_argument("--seconds", type=float, default=10.0, help="length of a case")
    parser.add_argument(
        "--per-worker", type=int, default=250, help="connections per client process"
    )
    parser.add_argument(
        "--transport", choices=("ws", "sio"), default="ws", help="what subscribers speak"
    )
    parser.add_argument("--idle-timeout", type=float, default=15.0, help="give up after silence")
    parser.add_argument("--appenders", type=int, default=50, help="of (b); 0: skip (b)")
    parser.add_argument("--conversations", type=int, default=10, help="appended in (b)")
    parser.add_argument("--append-seconds", type=float, default=5.0, help="length of (b)")
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, help="record each case's servers with py-spy here")
    parser.add_argument("--out", type=Path, default=RESULTS / "cluster.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.subscribers, args.seconds, args.append_seconds = "100", 5.0, 2.0
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    deployments = tuple(args.deployments.split(","))
    if unknown := set(deployments) - set(DEPLOYMENTS):
        raise SystemExit(f"unknown deployments: {', '.join(sorted(unknown))}")
    config = Config(
        deployments=deployments,
        subscribers=tuple(int(n) for n in args.subscribers.split(",")),
        rate=args.rate,
        seconds=args.seconds,
        per_worker=args.per_worker,
        length=ours().probe_length(),
        idle_timeout=args.idle_timeout,
        transport=args.transport,
    )
    root = Path(tempfile.mkdtemp(prefix="threadline-cluster-", dir="/tmp"))
    try:
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            runs.append(measure_run(args, config, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    middle = median(runs, worst=(".violations", *(f".{key}" for key in VIOLATIONS)))
    result = {
        "config": {
            "deployments": list(deployments),
            "subscribers": list(config.subscribers),
            "rate": config.rate,
            "seconds": config.seconds,
            "per_worker": config.per_worker,
            "transport": config.transport,
            "appenders": args.appenders,
            "conversations": args.conversations,
            "append_seconds": args.append_seconds,
            "event_bytes": ours().probe_bytes(config.length),
            "thought_length": config.length,
        },
        "environment": {
            **environment((*SERVER_PACKAGES, "asyncpg")),
            "postgresql": server_version(),
        },
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle, config)],
        "runs": runs,
    }
    write_result(args.out, result, report)


if __name__ == "__main__":
    main()
