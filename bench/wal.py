"""The SQLite log's WAL under a sustained burst of appends, with the checkpointer's
start-over (`storage/sqlite/checkpointer.py`) off and on, interleaved run by run.

Each case: ``writers`` tasks, one conversation each, append event by event (each awaited)
flat out for ``seconds`` into a fresh `SqliteStorage`, while the WAL file's size is sampled
every half second. Printed per case: appends/s, per-append p50 / p99 / max, and the WAL
file's size every 2 s and at its largest. "off" opens the store with a start-over
threshold no burst reaches, which is how the checkpointer behaved before it had one.
The runs and their medians go to ``bench/results/wal.json``.

Run: ``.venv/bin/python bench/wal.py [--runs 3] [--seconds 10] [--writers 100] [--quick]``.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from typing import Any

from bench.common import MIB, RESULTS, Metrics, environment, latency, log, median, write_result
from bench.storage_writes import Workload
from storage import NewConversation
from storage.sqlite import SqliteStorage
from storage.sqlite.checkpointer import RESTART_BYTES

NEVER = 1 << 62
"""A start-over threshold no burst reaches: the checkpointer as it was without one."""
SAMPLE_SECONDS = 0.5
TIMELINE = "wal_mib.at_"


async def burst(directory: Path, restart_bytes: int, writers: int, seconds: float) -> Metrics:
    store = await SqliteStorage.open(directory, wal_restart_bytes=restart_bytes)
    wal = directory / "events.db-wal"
    sizes: list[int] = []
    latencies: list[float] = []
    try:
        workload = Workload.build(7, 20_000, 2_000).sequential
        conversations = [
            (await store.create_conversation(NewConversation())).id for _ in range(writers)
        ]
        deadline = time.monotonic() + seconds

        async def writer(index: int, conversation_id: str) -> None:
            while time.monotonic() < deadline:
                began = time.perf_counter()
                await store.append(conversation_id, workload[index % len(workload)])
                latencies.append((time.perf_counter() - began) * 1e3)
                index += writers

        async def sample() -> None:
            while time.monotonic() < deadline:
                await asyncio.sleep(SAMPLE_SECONDS)
                sizes.append(wal.stat().st_size if wal.exists() else 0)

        started = time.perf_counter()
        await asyncio.gather(sample(), *(writer(n, c) for n, c in enumerate(conversations)))
        elapsed = time.perf_counter() - started
    finally:
        await store.close()
    every_2s = {
        f"{TIMELINE}{(n + 1) // 2}s": size / MIB for n, size in enumerate(sizes) if n % 4 == 3
    }
    return {
        "appends_per_s": len(latencies) / elapsed,
        **latency("append_ms", latencies),
        "wal_mib.largest": max(sizes, default=0) / MIB,
        **every_2s,
    }


def line(case: str, figures: Metrics) -> str:
    timeline = sorted(
        (int(key[len(TIMELINE) : -1]), value)
        for key, value in figures.items()
        if key.startswith(TIMELINE) and key.endswith("s")
    )
    return (
        f"{case:12s} {figures['appends_per_s']:9,.0f}/s  p50 {figures['append_ms.p50']:5.2f}"
        f"  p99 {figures['append_ms.p99']:6.2f}  max {figures['append_ms.max']:6.2f} ms"
        f"  WAL MiB every 2 s: {', '.join(f'{size:.0f}' for _, size in timeline)}"
        f"  (largest {figures['wal_mib.largest']:.0f})"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--writers", type=int, default=100)
    parser.add_argument("--out", type=Path, default=RESULTS / "wal.json")
    parser.add_argument("--quick", action="store_true", help="1 run of 3 s with 50 writers")
    args = parser.parse_args()
    if args.quick:
        args.runs, args.seconds, args.writers = 1, 3.0, 50
    cases = {"restart off": NEVER, "restart on": RESTART_BYTES}
    runs: dict[str, list[Metrics]] = {case: [] for case in cases}
    for run in range(args.runs):
        for case, restart_bytes in cases.items():
            directory = Path(tempfile.mkdtemp(prefix="threadline-wal-"))
            try:
                log(f"run {run + 1}: {case}")
                figures = asyncio.run(burst(directory, restart_bytes, args.writers, args.seconds))
            finally:
                shutil.rmtree(directory, ignore_errors=True)
            figures["loadavg"] = os.getloadavg()[0]
            runs[case].append(figures)
            print(f"run {run + 1}, load {figures['loadavg']:.2f}: {line(case, figures)}")
    result = {
        "config": {"runs": args.runs, "seconds": args.seconds, "writers": args.writers},
        "environment": environment(("aiosqlite",)),
        "median": {case: median(results) for case, results in runs.items()},
        "runs": runs,
    }
    write_result(args.out, result, report)


def report(result: dict[str, Any]) -> str:
    config = result["config"]
    lines = [
        f"median of {config['runs']} ({config['writers']} writers appending flat out,"
        f" {config['seconds']:.0f} s each):"
    ]
    lines += [f"  {line(case, figures)}" for case, figures in result["median"].items()]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
