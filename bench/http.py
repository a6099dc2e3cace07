"""HTTP benchmark: the REST events page of 100 from the real server, next to a bare
Starlette + aiosqlite app answering the same SQL from the same file.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/http.py [--runs 3] [--events 10000] [--concurrency 32]

One conversation of ``--events`` realistic events (the generator of bench/storage_events.py) is
preloaded with `SqliteStorage.append_many`; then each server in turn is started in its
own process on the same data directory:

* ``ours``: ``python -m server.cli serve --port P --data-dir D``, exactly as
  ``threadline serve`` runs (its default log level, info, so one access-log line per
  request; its output goes to a file);
* ``ours-quiet``: the same with ``--log-level warning`` (the cost of the access log);
* ``bare``: Starlette + uvicorn (same configuration) with one route that runs the SQL
  `search_events` runs through one aiosqlite connection and joins the stored bytes the
  same way; no auth, no conversation lookup, no parameter checks.

Against each: ``GET /api/conversations/{id}/events?start_id=<random>&limit=100``, with
(a) one sequential keep-alive client written on a plain socket (so the client adds
microseconds, not the ~0.3 ms of an HTTP library), (b) the same through
``httpx.Client`` for reference, and (c) ``--concurrency`` keep-alive connections from a
separate client process on asyncio streams for ``--seconds`` (requests/s, latency under
load, server CPU per request). The data files are read in full before each server is
measured (this VM pages out file cache left idle for about a minute) and every server
gets warm-up requests. With ``--runs R`` every figure is the median of R runs.

This file runs it; the clients are `bench.http_clients`, the servers
`bench.http_servers`, the target and the table `bench.http_report`.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from pathlib import Path

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
# Run as `python -m bench.<name>`, sys.path[0] is the working directory: the same fix.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from bench.common import (
    MIB,
    RESULTS,
    Metrics,
    count,
    environment,
    latency,
    log,
    median,
    ms,
    write_result,
)
from bench.http_clients import PAGE, RawClient, load_main, page_paths
from bench.http_report import report, verdicts
from bench.http_servers import TARGETS, Running, Target
from bench.machine import cpu_seconds, machine_busy_seconds, rss_bytes, warm
from bench.processes import Peer

WARM_UP_REQUESTS = 300


async def preload(data_dir: Path, events: int, seed: int) -> tuple[str, float]:
    """A conversation of ``events`` realistic events; its id and the mean event size."""
    from bench.storage_events import chunks, script
    from storage import NewConversation
    from storage.sqlite import SqliteStorage

    store = await SqliteStorage.open(data_dir / "log")
    try:
        record = await store.create_conversation(NewConversation(title="http benchmark"))
        for batch in chunks(script(seed, 0, Counter()).events(events), 1000):
            await store.append_many(record.id, batch)
        page = await store.search_events(record.id, start_id=0, limit=PAGE)
        size = sum(len(event.data) for event in page.events) / len(page.events)
        await store.wait_indexed()
    finally:
        await store.close()
    return record.id, size


def check_page(body: bytes, start: int) -> None:
    document = orjson.loads(body)
    ids = [event["id"] for event in document["events"]]
    if ids != list(range(start, start + PAGE)) or not isinstance(document["has_more"], bool):
        raise RuntimeError(f"wrong page from start_id={start}: {ids[:3]}...")


def measure(
    target: Target, data_dir: Path, conversation_id: str, events: int, args: argparse.Namespace
) -> Metrics:
    """One server: (a) sequential over a plain socket, (b) through httpx, (c) under load."""
    warm(data_dir / "log")
    server = Running(target, data_dir, conversation_id)
    prefix = target.label
    try:
        time.sleep(0.5)
        idle = rss_bytes(server.pid) / MIB
        paths = page_paths(conversation_id, events, seed=args.seed)
        metrics = _sequential(prefix, server.port, conversation_id, paths, args.requests)
        metrics |= _through_httpx(prefix, server.port, paths, args.requests // 2)
        metrics |= _under_load(prefix, server, conversation_id, events, args)
        metrics[f"{prefix}.rss_idle_mib"] = idle
        metrics[f"{prefix}.rss_mib"] = rss_bytes(server.pid) / MIB
    finally:
        server.stop()
    log(
        f"  {target.label}: p50 {ms(metrics[f'{prefix}.raw.p50'])} / p99 "
        f"{ms(metrics[f'{prefix}.raw.p99'])} ms sequential, "
        f"{count(metrics[f'{prefix}.load.rate'])} req/s with {args.concurrency}"
    )
    return metrics


def _sequential(
    prefix: str, port: int, conversation_id: str, paths: Iterator[str], requests: int
) -> Metrics:
    """A first page checked, `WARM_UP_REQUESTS`, then ``requests`` timed ones."""
    client = RawClient(port)
    try:
        check_page(client.get(f"/api/conversations/{conversation_id}/events?limit=100"), 0)
        for _ in range(WARM_UP_REQUESTS):
            client.get(next(paths))
        samples = []
        for _ in range(requests):
            path = next(paths)
            before = time.perf_counter()
            client.get(path)
            samples.append((time.perf_counter() - before) * 1000)
    finally:
        client.close()
    metrics = latency(f"{prefix}.raw", samples)
    metrics[f"{prefix}.raw.rate"] = 1000 / (sum(samples) / len(samples))
    return metrics


def _through_httpx(prefix: str, port: int, paths: Iterator[str], requests: int) -> Metrics:
    with httpx.Client(base_url=f"http://127.0.0.1:{port}") as library:
        samples = []
        for _ in range(requests):
            path = next(paths)
            before = time.perf_counter()
            library.get(path).raise_for_status()
            samples.append((time.perf_counter() - before) * 1000)
    return latency(f"{prefix}.httpx", samples)


def _under_load(
    prefix: str, server: Running, conversation_id: str, events: int, args: argparse.Namespace
) -> Metrics:
    """``--concurrency`` connections from a client process for ``--seconds``."""
    busy_before, wall_before = machine_busy_seconds(), time.monotonic()
    cpu_before = cpu_seconds(server.pid)
    loader = Peer(load_main, server.port, conversation_id, events, args.concurrency, args.seconds)
    result = loader.receive(args.seconds + 600)
    cpu = cpu_seconds(server.pid) - cpu_before
    others = machine_busy_seconds() - busy_before - cpu - result["cpu"]
    metrics = {f"{prefix}.load.other_cpus": max(0.0, others / (time.monotonic() - wall_before))}
    loader.join(60)
    metrics |= latency(f"{prefix}.load", result["latencies"])
    metrics[f"{prefix}.load.rate"] = result["requests"] / result["seconds"]
    metrics[f"{prefix}.load.server_us"] = cpu / result["requests"] * 1e6
    return metrics


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="in the one conversation")
    parser.add_argument("--requests", type=int, default=3_000, help="sequential, per server")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="of concurrent load")
    parser.add_argument("--servers", default=",".join(t.label for t in TARGETS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "http.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    labels = args.servers.split(",")
    targets = [target for target in TARGETS if target.label in labels]
    root = Path(tempfile.mkdtemp(prefix="threadline-http-", dir="/tmp"))
    try:
        log(f"preloading {args.events:,} events")
        conversation_id, event_bytes = asyncio.run(preload(root, args.events, args.seed))
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            metrics: Metrics = {}
            for target in targets:
                metrics |= measure(target, root, conversation_id, args.events, args)
            runs.append(metrics)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    middle = median(runs)
    result = {
        "config": {
            "events": args.events,
            "event_bytes": event_bytes,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "servers": labels,
        },
        "environment": environment(),
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle)],
        "runs": runs,
    }
    write_result(args.out, result, report)


if __name__ == "__main__":
    main()
