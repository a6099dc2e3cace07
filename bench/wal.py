"""The SQLite log's WAL under a sustained burst of appends, with the checkpointer's
start-over (`storage/sqlite/checkpointer.py`) off and on, interleaved run by run.

Each case is `bench.storage_writes.measure_appends` (``events`` spread over its 100
conversations, each appended event by event by its own task) into a fresh
`SqliteStorage`, while the WAL file's size is sampled every half second. Printed per
case: appends/s, per-append p50 / p99 / max, and the WAL file's size every 2 s and at
its largest. "off" opens the store with a start-over threshold no burst reaches, which
is how the checkpointer behaved before it had one. The runs and their medians go to
``bench/results/wal.json``.

Run: ``.venv/bin/python bench/wal.py [--runs 3] [--events 200000] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.common import MIB, RESULTS, Metrics, environment, log, median, write_result
from bench.storage_writes import WRITERS, Workload, measure_appends
from storage.sqlite import SqliteStorage
from storage.sqlite.checkpointer import RESTART_BYTES

NEVER = 1 << 62
"""A start-over threshold no burst reaches: the checkpointer as it was without one."""
SAMPLE_SECONDS = 0.5
TIMELINE = "wal_mib.at_"


async def burst(directory: Path, restart_bytes: int, workload: Workload) -> Metrics:
    wal = directory / "events.db-wal"
    sizes: list[int] = []

    async def sample() -> None:
        while True:
            await asyncio.sleep(SAMPLE_SECONDS)
            sizes.append(wal.stat().st_size if wal.exists() else 0)

    store = await SqliteStorage.open(directory, wal_restart_bytes=restart_bytes)
    sampler = asyncio.create_task(sample())
    try:
        figures = await measure_appends(store, "append", workload.streams)
    finally:
        sampler.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sampler
        await store.close()
    every_2s = {
        f"{TIMELINE}{(n + 1) // 2}s": size / MIB for n, size in enumerate(sizes) if n % 4 == 3
    }
    return figures | {"wal_mib.largest": max(sizes, default=0) / MIB, **every_2s}


def line(case: str, figures: Metrics) -> str:
    timeline = sorted(
        (int(key[len(TIMELINE) : -1]), value)
        for key, value in figures.items()
        if key.startswith(TIMELINE) and key.endswith("s")
    )
    return (
        f"{case:12s} {figures['append.rate']:9,.0f}/s  p50 {figures['append.p50']:5.2f}"
        f"  p99 {figures['append.p99']:6.2f}  max {figures['append.max']:6.2f} ms"
        f"  WAL MiB every 2 s: {', '.join(f'{size:.0f}' for _, size in timeline)}"
        f"  (largest {figures['wal_mib.largest']:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--events", type=int, default=200_000, help="over 100 conversations")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--out", type=Path, default=RESULTS / "wal.json")
    parser.add_argument("--quick", action="store_true", help="1 run of 50,000 events")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.events = 1, 50_000
    log(f"building the workload ({args.events:,} events over {WRITERS} conversations)")
    workload = Workload.build(args.seed, args.events, 0)
    cases = {"restart off": NEVER, "restart on": RESTART_BYTES}
    runs: dict[str, list[Metrics]] = {case: [] for case in cases}
    for run in range(args.runs):
        for case, restart_bytes in cases.items():
            directory = Path(tempfile.mkdtemp(prefix="threadline-wal-"))
            try:
                log(f"run {run + 1}: {case}")
                figures = asyncio.run(burst(directory, restart_bytes, workload))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            figures["loadavg"] = os.getloadavg()[0]
            runs[case].append(figures)
            print(f"run {run + 1}, load {figures['loadavg']:.2f}: {line(case, figures)}")
    result = {
        "config": {"runs": args.runs, "events": args.events, "writers": WRITERS},
        "environment": environment(("aiosqlite",)),
        "median": {case: median(results) for case, results in runs.items()},
        "runs": runs,
    }
    write_result(args.out, result, report)


def report(result: dict[str, Any]) -> str:
    config = result["config"]
    lines = [
        f"median of {config['runs']} ({config['events']:,} events appended by"
        f" {config['writers']} writers, event by event):"
    ]
    lines += [f"  {line(case, figures)}" for case, figures in result["median"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
