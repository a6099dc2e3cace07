"""Storage sweep: what appends and pages cost as the log grows, 10k -> 1M events.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/storage_sweep.py [--sizes 10000,100000,1000000]
                                            [--per-conversation 1000] [--appends 10000]
                                            [--samples 500] [--repeats 1]

One store is grown in steps (`append_many` from 100 concurrent tasks into conversations
of ``--per-conversation`` events, the generator of bench/storage_events.py), so the
biggest size costs one load, not one per size. At each size, once the full-text index
has caught up, the WAL is checkpointed and the files are read into the page cache:

* pages: `search_events` pages of 100 from a random start_id of a random loaded
  conversation (no filter; ``include_types=["CmdRunAction"]``; a rare word), each next
  to the identical SQL through bare aiosqlite and plain sqlite3 on the same file (the
  `bench.storage_baseline.Comparer`, which also checks that all three answer alike);
* `search_all` for a rare word, and for a moderate one narrowed to 3 conversations;
* appends: ``--appends`` events from 100 concurrent writers (each its own new
  conversation), event by event: the acknowledged rate, the rate until everything is
  searchable, and per-append p50/p99.

The appended events stay in the store (the next size loads that many fewer). With
``--repeats R`` each size is measured R times and every figure is its median. The result
goes to ``bench/results/storage_sweep.json``, its plot beside it (`bench.plots`).
"""

from __future__ import annotations

import argparse
import asyncio
import math
import random
import shutil
import sys
import tempfile
from collections import Counter
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
# Run as `python -m bench.<name>`, sys.path[0] is the working directory: the same fix.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import plots
from bench.common import RESULTS, Metrics, count, environment, log, median, ms, render, write_result
from bench.machine import warm
from bench.storage_baseline import Comparer, bare_aiosqlite, bare_sqlite3
from bench.storage_dataset import Dataset, checkpoint, conversation_sizes, load
from bench.storage_events import script
from bench.storage_reads import PAGE_FILTERS, Reads
from bench.storage_writes import WRITERS, measure_appends
from storage.sqlite import SqliteStorage

PACKAGES = ("aiosqlite", "orjson", "pydantic")
PAGES = ("none", "CmdRunAction", "rare")
"""The page filters of `bench.storage_reads.PAGE_FILTERS` measured at each size."""
SEARCHES = ("rare", "moderate_few")
"""The `search_all` questions of `bench.storage_reads.SEARCHES` measured at each size."""


class GrowingStore:
    """One store and the conversations loaded into it so far."""

    def __init__(self, store: SqliteStorage, directory: Path, seed: int) -> None:
        self.store = store
        self.directory = directory
        self.seed = seed
        self.events = 0
        self.loaded: list[tuple[str, int]] = []
        self.markers: Counter[str] = Counter()
        self.appended_batches = 0

    async def grow_to(self, target: int, per_conversation: int) -> dict[str, Any]:
        """Load conversations until the store holds ``target`` events; the load's rates
        and the files' sizes after it."""
        missing = target - self.events
        facts: dict[str, Any] = {}
        if missing > 0:
            plan = conversation_sizes(missing, math.ceil(missing / per_conversation))
            ids, facts = await load(self.store, plan, self.seed, self.markers, len(self.loaded))
            self.loaded += zip(ids, plan, strict=True)
            self.events += missing
        return facts | checkpoint(self.directory)

    async def append(self, total: int) -> Metrics:
        """``total`` events from `WRITERS` concurrent writers into new conversations."""
        ignored: Counter[str] = Counter()
        first = self.appended_batches * WRITERS
        streams = [
            list(script(self.seed + 1, first + index, ignored).events(total // WRITERS))
            for index in range(WRITERS)
        ]
        self.appended_batches += 1
        found = await measure_appends(self.store, "append", streams)
        self.events += sum(map(len, streams))
        return found


async def measure_size(growing: GrowingStore, reads: Reads, args: argparse.Namespace) -> Metrics:
    metrics: Metrics = {"events": float(growing.events)}
    metrics["warm_s"] = warm(growing.directory)
    metrics |= await reads.pages({name: PAGE_FILTERS[name] for name in PAGES}, ("typical",))
    metrics |= await reads.searches(SEARCHES)
    metrics |= await growing.append(args.appends)
    return metrics


async def sweep(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    store = await SqliteStorage.open(root)
    growing = GrowingStore(store, root, args.seed)
    aio = await bare_aiosqlite(root)
    sync = bare_sqlite3(root)
    points: list[dict[str, Any]] = []
    try:
        rng = random.Random(args.seed)
        for size in args.sizes:
            log(f"growing the log to {size:,} events")
            facts = await growing.grow_to(size, args.per_conversation)
            dataset = Dataset(root, list(growing.loaded), growing.loaded[0], {}, facts)
            reads = Reads(store, dataset, Comparer(aio, sync), args.samples, rng)
            repeats = []
            for repeat in range(args.repeats):
                log(f"  {size:,} events: pages, searches, appends ({repeat + 1}/{args.repeats})")
                repeats.append(await measure_size(growing, reads, args))
            points.append(
                {"size": size, "load": facts, "median": median(repeats), "repeats": repeats}
            )
    finally:
        await aio.close()
        sync.close()
        await store.close()
    config = {key: value for key, value in vars(args).items() if key not in ("out", "data_dir")}
    return {"config": config, "environment": environment(PACKAGES), "points": points}


def report(result: dict[str, Any]) -> str:
    config, env = result["config"], result["environment"]
    sizes = ", ".join(f"{size:,}" for size in config["sizes"])
    rows = []
    for point in result["points"]:
        m = point["median"]
        rows.append(
            [
                f"{point['size']:,}",
                count(point["load"].get("load.rate")),
                count(m["append.rate"]),
                count(m["append.rate_fts"]),
                ms(m["append.p99"]),
                *(
                    ms(m[f"page.typical.{name}.{v}.p99"])
                    for name in PAGES
                    for v in ("ours", "aiosqlite")
                ),
                *(ms(m[f"search.{name}.ours.p99"]) for name in SEARCHES),
            ]
        )
    return "\n".join(
        [
            f"threadline storage sweep: one log grown to {sizes} events "
            f"({config['per_conversation']:,} per conversation); at each size "
            f"{config['appends']:,} appends from {WRITERS} writers, {config['samples']} samples "
            f"per read; median of {config['repeats']} repeat(s) per size",
            f"{env['cpus']} CPUs, Python {env['python']}, SQLite {env['sqlite']}, aiosqlite "
            f"{env['aiosqlite']}; commit {env['commit']}; load average "
            f"{env['load_start'][0]:.2f} at start, {env['load_end'][0]:.2f} at end",
            "",
            render(
                "events/s, and p99 in ms (page of 100 in a typical conversation: ours / bare "
                "aiosqlite; search_all: ours)",
                [
                    "log events",
                    "load/s",
                    "append/s",
                    "incl. FTS",
                    "append p99",
                    *(f"{name} {v}" for name in PAGES for v in ("ours", "aio")),
                    *(f"search {name}" for name in SEARCHES),
                ],
                rows,
            ),
        ]
    )


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000", help="log sizes, ascending")
    parser.add_argument("--per-conversation", type=int, default=1_000, help="events each")
    parser.add_argument("--appends", type=int, default=10_000, help="appended at each size")
    parser.add_argument("--samples", type=int, default=500, help="per read figure")
    parser.add_argument("--repeats", type=int, default=1, help="measurements per size")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "storage_sweep.json")
    parser.add_argument("--data-dir", type=Path, help="default: a new directory under /tmp")
    args = parser.parse_args(argv)
    args.sizes = [int(size) for size in args.sizes.split(",")]
    if args.sizes != sorted(args.sizes):
        parser.error("--sizes must ascend (one log is grown)")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    root = Path(tempfile.mkdtemp(prefix="threadline-sweep-", dir=args.data_dir or "/tmp"))
    try:
        result = asyncio.run(sweep(args, root))
    finally:
        shutil.rmtree(root, ignore_errors=True)
    write_result(args.out, result, report)
    plots.draw_beside(args.out, result)


if __name__ == "__main__":
    main()
