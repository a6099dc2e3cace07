"""Storage benchmark: the embedded SQLite backend against SQLite's raw limits, in one run.

Run by hand, never by the tests (from the repository root):

    python bench/storage.py [--events N] [--conversations M] [--runs 3]
                            [--out bench/results/storage.json] [--data-dir DIR] [--keep]

What one run measures, on the same machine:

(a) raw limits: sqlite3 ``executemany`` of 100 rows per transaction (WAL,
    synchronous=NORMAL) into the ``events`` table of schema migration 1, and the page query
    `search_events` issues, through bare aiosqlite and plain sqlite3, on that data;
(b) `SqliteStorage.append` from 1 conversation (sequential awaits) and from 100
    concurrent ones: rate, per-append latency, the rate until everything is also
    searchable (``wait_indexed``), and how far the full-text index trails;
(c) `search_events` pages of 100 over a big dataset (``--events`` in ``--conversations``
    plus one ``--big-conversation``), each compared with the identical SQL through bare
    aiosqlite and plain sqlite3 on the same file;
(d) `count_events`; (e) cross-conversation `search_all`; (f) deleting a conversation of
    ``--append-events`` events while another appends event by event: how long its
    appends wait while the delete runs.

The big dataset is loaded once, through `append_many` from 100 concurrent tasks (itself a
throughput figure), and reused by every run; the append measurements use fresh stores.
With ``--runs R`` every figure is the median of R runs and the targets are checked on the
medians. Database files are read in full right before each read measurement: this VM
pages out file cache left idle for about a minute. ``--data-dir`` with ``--keep`` keeps
the big dataset, and a later run with the same ``--data-dir`` and sizes reuses it.

Connections of the bare baselines use the store's pragmas (WAL, synchronous=NORMAL,
cache_size 64 MiB). Latencies are wall-clock per call, p50/p99 in milliseconds.

This file runs it; the parts: `bench.storage_events` (the event generator),
`bench.storage_baseline` (bare SQLite, the SQL, the `Comparer`), `bench.storage_writes`
(a, b), `bench.storage_dataset` (the big dataset), `bench.storage_reads` (c, d, e) and
`bench.storage_report`.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import random
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
# Run as `python -m bench.<name>`, sys.path[0] is the working directory: the same fix.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import RESULTS, Metrics, environment, log, median, write_result
from bench.machine import warm
from bench.storage_baseline import Comparer, bare_aiosqlite, bare_sqlite3
from bench.storage_dataset import Dataset, open_dataset, verify
from bench.storage_reads import Reads, query_plans
from bench.storage_report import report, verdicts
from bench.storage_writes import (
    WRITERS,
    Workload,
    append_benchmark,
    delete_benchmark,
    raw_limits,
)

PACKAGES = ("aiosqlite", "orjson", "pydantic")
"""The package versions of the environment stamp."""


async def measure_run(
    run: int, scratch: Path, workload: Workload, reads: Reads, dataset: Dataset, samples: int
) -> Metrics:
    try:
        log(f"run {run + 1}: raw limits")
        metrics = await raw_limits(scratch / "raw", workload.rows, WRITERS, samples, run)
        log(f"run {run + 1}: appends")
        metrics |= await append_benchmark("append.one", scratch / "one", [workload.sequential])
        metrics |= await append_benchmark("append.hundred", scratch / "hundred", workload.streams)
        log(f"run {run + 1}: a big delete while appending")
        metrics |= await delete_benchmark(scratch / "delete", workload.streams, workload.sequential)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sections = {"pages": reads.pages, "counts": reads.counts, "searches": reads.searches}
    for name, section in sections.items():
        log(f"run {run + 1}: {name}")
        metrics[f"warm.{name}"] = warm(dataset.directory)
        metrics |= await section()
    # The machines are shared: a load well above what this process makes flags a noisy run.
    metrics["loadavg"] = os.getloadavg()[0]
    return metrics


async def benchmark(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    log(f"building the append workloads ({args.append_events:,} + {args.sequential_events:,})")
    workload = Workload.build(args.seed, args.append_events, args.sequential_events)
    # The workloads stay in memory for the whole run: keep the collector off them.
    gc.collect()
    gc.freeze()
    store, dataset = await open_dataset(
        root / "dataset", args.events, args.conversations, args.big_conversation, args.seed
    )
    aio = await bare_aiosqlite(dataset.directory)
    sync = bare_sqlite3(dataset.directory)
    try:
        log("verifying the dataset")
        await verify(store, dataset)
        reads = Reads(store, dataset, Comparer(aio, sync), args.samples, random.Random(args.seed))
        runs = [
            await measure_run(run, root / f"run-{run}", workload, reads, dataset, args.samples)
            for run in range(args.runs)
        ]
        plans = query_plans(sync, dataset)
    finally:
        await aio.close()
        sync.close()
        await store.close()
    config = {
        key: value for key, value in vars(args).items() if key not in ("out", "data_dir", "keep")
    }
    config["event_bytes"] = statistics.mean(len(row[8]) for row in workload.rows)
    config["text_bytes"] = statistics.mean(len(row[7]) for row in workload.rows)
    middle = median(runs)
    return {
        "config": config,
        "environment": environment(PACKAGES),
        "dataset": dataset.facts | {"markers": dataset.markers},
        "median": middle,
        "targets": [
            verdict.as_dict()
            for verdict in verdicts(middle, f"{args.big_conversation // 1000}k-event conversation")
        ],
        "runs": runs,
        "plans": plans,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="big dataset size")
    parser.add_argument("--conversations", type=int, default=1_000, help="it holds them in")
    parser.add_argument(
        "--big-conversation", type=int, default=100_000, help="events of its one big conversation"
    )
    parser.add_argument("--append-events", type=int, default=100_000, help="for (a) and (b)")
    parser.add_argument(
        "--sequential-events", type=int, default=10_000, help="appended from 1 conversation"
    )
    parser.add_argument("--samples", type=int, default=1_000, help="per read figure and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "storage.json")
    parser.add_argument("--data-dir", type=Path, help="default: a new directory under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="threadline-bench-", dir="/tmp"))
    try:
        result = asyncio.run(benchmark(args, root))
    finally:
        if args.keep:
            log(f"data kept in {root}")
        elif args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(root / "dataset", ignore_errors=True)
    write_result(args.out, result, report)


if __name__ == "__main__":
    main()
