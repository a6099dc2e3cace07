"""The raw baseline of `bench/cluster.py`: threadline's PostgreSQL append throughput with
concurrent appenders, next to bare batched inserts of the same rows into the same table.

1. threadline: ``appenders`` tasks append probe events (`bench.fanout_server`) flat out
   for ``seconds`` through one `PostgresStorage` (opened as ``threadline serve`` opens it:
   group commit, NOTIFY and the trailing full-text indexer included), spread over
   ``conversations`` conversations of a fresh database. The group commit's batch sizes
   are read back from the log: every event a commit writes carries that commit's
   timestamp (``ts_us``), so grouping by it gives each transaction's size.
2. raw: in another fresh database, migrated by threadline (the same schema), the same
   sizes of batch, in the same order, each one ``INSERT ... SELECT FROM unnest(...)``
   statement (the writer's own `INSERT_EVENTS`) of pre-built rows, back to back on one
   connection, each its own transaction. No counts, no notification, no index pass.

Both use the same events (~530 B, the fan-out benchmark's probe) and the same durability
(the server's ``synchronous_commit``). Both start from the event in hand: the appenders
append one event object built before the clock starts, as raw's rows are (building a
pydantic event is the caller's work, not the log's); threadline still does all of its
own per append (serialization, searchable text, ids, timestamps, the insert's columns).
"""

from __future__ import annotations

import asyncio
import os
import time
from typing import Any

import asyncpg

from bench.cluster_postgres import fresh_database, postgres_cpu, postgres_cpu_since, postgres_pids
from bench.common import Metrics, log
from bench.fanout_server import probe_event
from bench.machine import cpu_seconds
from storage import NewConversation
from storage.postgres import PostgresStorage
from storage.postgres.writer import INSERT_EVENTS
from storage.records import now_micros, prepare, stamp

# Id 0 of each conversation is its warm-up append, before the clock starts.
BATCH_SIZES = "SELECT count(*) FROM events WHERE id > 0 GROUP BY ts_us ORDER BY min(seq)"


async def threadline_appends(
    url: str, appenders: int, conversations: int, seconds: float, length: int, busy: Busy
) -> tuple[float, list[int]]:
    """Appends/s through `PostgresStorage`, and the group commit's batch sizes; ``busy``
    measures the appending."""
    store = await PostgresStorage.open(url)
    try:
        ids = [
            (await store.create_conversation(NewConversation(title=f"append {n}"))).id
            for n in range(conversations)
        ]
        for conversation_id in ids:
            await store.append(conversation_id, probe_event(time.time(), length))
        done = 0
        event = probe_event(time.time(), length)
        deadline = time.monotonic() + seconds

        async def appender(conversation_id: str) -> None:
            nonlocal done
            while time.monotonic() < deadline:
                await store.append(conversation_id, event)
                done += 1

        with busy:
            await asyncio.gather(*(appender(ids[n % conversations]) for n in range(appenders)))
    finally:
        await store.close()
    connection = await asyncpg.connect(url)
    try:
        sizes = [row[0] for row in await connection.fetch(BATCH_SIZES)]
    finally:
        await connection.close()
    if sum(sizes) != done:
        raise RuntimeError(f"{done} appends but {sum(sizes)} events in the log's batches")
    return done / busy.wall, sizes


async def raw_inserts(
    url: str, sizes: list[int], conversations: int, length: int, busy: Busy
) -> float:
    """Events/s of ``sizes`` batches of bare multi-row inserts, back to back; ``busy``
    measures the inserting."""
    store = await PostgresStorage.open(url, notify=False)  # migrates: the same schema
    try:
        for n in range(conversations):
            await store.create_conversation(NewConversation(title=f"raw {n}"))
    finally:
        await store.close()
    connection = await asyncpg.connect(url)
    try:
        keys = [row[0] for row in await connection.fetch("SELECT key FROM conversations")]
        batches = _rows(sizes, keys, length)
        with busy:
            for columns in batches:
                await connection.execute(INSERT_EVENTS, *columns)
    finally:
        await connection.close()
    return sum(sizes) / busy.wall


def _rows(sizes: list[int], keys: list[int], length: int) -> list[tuple[list[Any], ...]]:
    """Each batch's column arrays (conv, id, kind, source, ts_us, hidden, text, data):
    stored probe events, the conversations taken in turn, ids gapless in each."""
    next_id = dict.fromkeys(keys, 0)
    prepared = prepare(probe_event(time.time(), length))
    batches = []
    turn = 0
    for size in sizes:
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [], [], [])
        timestamp = now_micros()
        for _ in range(size):
            key = keys[turn % len(keys)]
            turn += 1
            data = stamp(prepared, next_id[key], timestamp)
            row = (key, next_id[key], prepared.kind, prepared.source, timestamp,
                   prepared.hidden, prepared.text, data)  # fmt: skip
            for column, value in zip(columns, row, strict=True):
                column.append(value)
            next_id[key] += 1
        batches.append(columns)
    return batches


def measure(appenders: int, conversations: int, seconds: float, length: int) -> Metrics:
    """Both sides, each on a fresh database, and their ratio (``baseline.*``); with the
    cores this process and PostgreSQL kept busy during each."""
    ours_busy, raw_busy = Busy(), Busy()
    with fresh_database() as url:
        ours, sizes = asyncio.run(
            threadline_appends(url, appenders, conversations, seconds, length, ours_busy)
        )
    with fresh_database() as url:
        raw = asyncio.run(raw_inserts(url, sizes, conversations, length, raw_busy))
    log(
        f"  threadline {ours:,.0f} appends/s ({appenders} appenders, {len(sizes)} commits of "
        f"{sum(sizes) / len(sizes):.1f} on average; CPUs: this process {ours_busy.own:.2f}, "
        f"PostgreSQL {ours_busy.postgres:.2f}); raw batched inserts {raw:,.0f} events/s "
        f"(CPUs {raw_busy.own:.2f}, {raw_busy.postgres:.2f})"
    )
    return {
        "baseline.threadline_per_s": ours,
        "baseline.raw_per_s": raw,
        "baseline.ratio": ours / raw,
        "baseline.commits": float(len(sizes)),
        "baseline.mean_batch": sum(sizes) / len(sizes),
        "baseline.max_batch": float(max(sizes)),
        "baseline.threadline_cpus": ours_busy.own,
        "baseline.threadline_postgres_cpus": ours_busy.postgres,
        "baseline.raw_cpus": raw_busy.own,
        "baseline.raw_postgres_cpus": raw_busy.postgres,
    }


class Busy:
    """The timed block: its wall seconds, and the cores this process and PostgreSQL kept
    busy while it ran."""

    def __init__(self) -> None:
        self.wall = self.own = self.postgres = 0.0

    def __enter__(self) -> Busy:
        self._started = time.perf_counter()
        self._own = cpu_seconds(os.getpid())
        self._postgres = postgres_cpu(postgres_pids())
        return self

    def __exit__(self, *exc: object) -> None:
        self.wall = time.perf_counter() - self._started
        self.own = (cpu_seconds(os.getpid()) - self._own) / self.wall
        self.postgres = postgres_cpu_since(self._postgres) / self.wall
