"""How processes should hear of each other's appends: PostgreSQL LISTEN/NOTIFY or Redis
pub/sub (issue 14 asks to measure both and choose).

Two measurements, each in separate processes on this machine, both variants in one run:

1. **Latency**: a writer commits a transaction (one small insert) 200 times a second and
   announces it, either with ``pg_notify`` inside the transaction or with a Redis
   ``PUBLISH`` after the commit; a listener process records how long after the commit
   began each announcement arrived (``time.monotonic_ns``, the same clock in every
   process). p50 / p99 / max.
2. **Throughput**: three writer processes append flat out to their own conversations
   through `PostgresStorage` (group commit), with announcements in every transaction
   and without them (a NOTIFY takes a cluster-wide lock at commit). Appends per second.

Needs PostgreSQL and Redis on 127.0.0.1 (`scripts/services` starts PostgreSQL; Redis:
``redis-server --daemonize yes --port 6379 --save "" --appendonly no``).
Run: ``.venv/bin/python bench/notify.py [--seconds 5]``.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import asyncpg
import redis.asyncio as aioredis

from bench.common import latency, log

POSTGRES = os.environ.get(
    "THREADLINE_TEST_POSTGRES", "postgresql://postgres:postgres@127.0.0.1:5432/threadline_test"
)
REDIS = os.environ.get("THREADLINE_TEST_REDIS", "redis://127.0.0.1:6379/0")
CHANNEL = "bench_notify"


async def _listen(kind: str, seconds: float, results: multiprocessing.Queue) -> None:
    delays: list[float] = []

    def heard(payload: str) -> None:
        delays.append((time.monotonic_ns() - int(payload)) / 1e6)

    if kind == "postgres":
        connection = await asyncpg.connect(POSTGRES)
        await connection.add_listener(CHANNEL, lambda *args: heard(args[3]))
        results.put("ready")
        await asyncio.sleep(seconds + 1)
        await connection.close()
    else:
        client = aioredis.from_url(REDIS)
        pubsub = client.pubsub()
        await pubsub.subscribe(CHANNEL)
        results.put("ready")
        deadline = time.monotonic() + seconds + 1
        while time.monotonic() < deadline:
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0.5)
            if message is not None:
                heard(message["data"].decode())
        await client.aclose()
    results.put(delays)


def listener(kind: str, seconds: float, results: multiprocessing.Queue) -> None:
    asyncio.run(_listen(kind, seconds, results))


async def announce_at_rate(kind: str, seconds: float, rate: float) -> int:
    connection = await asyncpg.connect(POSTGRES)
    await connection.execute("CREATE TEMP TABLE sink (at BIGINT)")
    client = aioredis.from_url(REDIS) if kind == "redis" else None
    sent = 0
    started = time.monotonic()
    while time.monotonic() - started < seconds:
        stamp = str(time.monotonic_ns())
        async with connection.transaction():
            await connection.execute("INSERT INTO sink VALUES ($1)", int(stamp))
            if kind == "postgres":
                await connection.execute("SELECT pg_notify($1, $2)", CHANNEL, stamp)
        if client is not None:
            await client.publish(CHANNEL, stamp)
        sent += 1
        await asyncio.sleep(max(0.0, started + sent / rate - time.monotonic()))
    await connection.close()
    if client is not None:
        await client.aclose()
    return sent


def measure_latency(kind: str, seconds: float, rate: float) -> dict[str, float]:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    process = context.Process(target=listener, args=(kind, seconds, results))
    process.start()
    assert results.get(timeout=30) == "ready"
    sent = asyncio.run(announce_at_rate(kind, seconds, rate))
    delays = results.get(timeout=60)
    process.join()
    return {"sent": sent, "heard": len(delays), **latency("ms", delays)}


async def _append_flat_out(url: str, seconds: float, notify: bool) -> int:
    from storage import NewConversation
    from storage.postgres import PostgresStorage
    from tests.storage.factories import say

    store = await PostgresStorage.open(url, notify=notify)
    conversation = (await store.create_conversation(NewConversation())).id
    done = 0
    deadline = time.monotonic() + seconds

    async def writer() -> None:
        nonlocal done
        while time.monotonic() < deadline:
            await store.append(conversation, say("x" * 200))
            done += 1

    await asyncio.gather(*(writer() for _ in range(50)))
    await store.close()
    return done


def appender(url: str, seconds: float, notify: bool, results: multiprocessing.Queue) -> None:
    results.put(asyncio.run(_append_flat_out(url, seconds, notify)))


def measure_throughput(url: str, seconds: float, notify: bool, processes: int = 3) -> float:
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    workers = [
        context.Process(target=appender, args=(url, seconds, notify, results))
        for _ in range(processes)
    ]
    for worker in workers:
        worker.start()
    total = sum(results.get(timeout=120) for _ in workers)
    for worker in workers:
        worker.join()
    return total / seconds


async def _drop(schema: str) -> None:
    connection = await asyncpg.connect(POSTGRES)
    await connection.execute(f"DROP SCHEMA IF EXISTS {schema} CASCADE")
    await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--runs", type=int, default=3)
    arguments = parser.parse_args()
    print(f"load average before: {os.getloadavg()}")
    rows: dict[str, list[dict[str, float]]] = {}
    for run in range(arguments.runs):
        for kind in ("postgres", "redis"):
            log(f"run {run + 1}: latency, {kind}")
            rows.setdefault(f"latency {kind}", []).append(
                measure_latency(kind, arguments.seconds, arguments.rate)
            )
        schema = "bench_" + uuid.uuid4().hex[:12]
        url = f"{POSTGRES}?schema={schema}"
        try:
            for notify in (True, False):
                log(f"run {run + 1}: throughput, notify={notify}")
                rows.setdefault(f"throughput notify={notify}", []).append(
                    {"appends_per_s": measure_throughput(url, arguments.seconds, notify)}
                )
        finally:
            asyncio.run(_drop(schema))
    print(f"load average after: {os.getloadavg()}")
    for name, runs in rows.items():
        keys = runs[0].keys()
        medians = {key: sorted(run[key] for run in runs)[len(runs) // 2] for key in keys}
        print(f"{name:28} " + "  ".join(f"{key}={value:.3g}" for key, value in medians.items()))


if __name__ == "__main__":
    main()
