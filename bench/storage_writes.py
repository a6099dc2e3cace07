"""The write side of the storage benchmark: (a) sqlite3 ``executemany`` into the bare
schema, with the page query through bare aiosqlite and plain sqlite3 on that data, and
(b) `SqliteStorage.append` from 1 conversation and from `WRITERS` concurrent ones.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import random
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.common import Metrics
from bench.machine import warm
from bench.storage_baseline import CACHE_KIB, bare_aiosqlite, bare_sqlite3, latency_ms, page_sql
from bench.storage_events import chunks, script
from events import EventBase
from storage import NewConversation
from storage.records import now_micros, prepare, stamp
from storage.sqlite import SqliteStorage
from storage.sqlite.schema import LOG_MIGRATIONS, migrate_log
from storage.sqlite.store import LOG_FILE
from storage.sqlite.writer import INSERT_EVENT

RAW_BATCH = 100
WRITERS = 100
LAG_SAMPLE_INTERVAL = 0.05


@dataclass(frozen=True, slots=True)
class Workload:
    """The append workloads, built once and reused by every run."""

    sequential: list[EventBase]
    """One conversation's events, appended one by one."""
    streams: list[list[EventBase]]
    """`WRITERS` conversations' events, appended concurrently."""
    rows: list[tuple[Any, ...]]
    """The rows of ``streams`` as the log writer inserts them, for the raw insert."""

    @classmethod
    def build(cls, seed: int, events: int, sequential: int) -> Workload:
        ignored: Counter[str] = Counter()
        streams = [
            list(script(seed + 1, index, ignored).events(events // WRITERS))
            for index in range(WRITERS)
        ]
        one = list(script(seed + 2, 0, ignored).events(sequential))
        return cls(one, streams, raw_rows(streams))


# -- (a) raw limits --------------------------------------------------------------------


def raw_rows(streams: Sequence[Sequence[EventBase]]) -> list[tuple[Any, ...]]:
    """The rows the log writer would insert for ``streams`` (conversation keys 1..n),
    interleaved as concurrent conversations append them."""
    rows: list[tuple[Any, ...]] = []
    now = now_micros()
    for event_id in range(max(len(stream) for stream in streams)):
        for key, stream in enumerate(streams, start=1):
            if event_id < len(stream):
                prepared = prepare(stream[event_id])
                seq = len(rows) + 1
                data = stamp(prepared, event_id, now + seq)
                rows.append(
                    (seq, key, event_id, prepared.kind, prepared.source, now + seq,
                     prepared.hidden, prepared.text, data)
                )  # fmt: skip
    return rows


def raw_insert(directory: Path, rows: Sequence[tuple[Any, ...]], conversations: int) -> float:
    """Events/s of sqlite3 ``executemany``, `RAW_BATCH` rows per transaction, into the
    tables of schema migration 1."""
    directory.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(directory / LOG_FILE, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        migrate_log(db, LOG_MIGRATIONS[:1])
        now = now_micros()
        db.executemany(
            "INSERT INTO conversations (key, id, status, created_us, updated_us) "
            "VALUES (?, ?, 'STOPPED', ?, ?)",
            [(key, f"raw-{key}", now, now) for key in range(1, conversations + 1)],
        )
        start = time.perf_counter()
        for batch in chunks(rows, RAW_BATCH):
            db.execute("BEGIN")
            db.executemany(INSERT_EVENT, batch)
            db.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)


async def raw_limits(
    directory: Path, rows: Sequence[tuple[Any, ...]], conversations: int, samples: int, seed: int
) -> Metrics:
    metrics = {"raw.insert.rate": raw_insert(directory, rows, conversations)}
    per_conversation = len(rows) // conversations
    rng = random.Random(seed)
    aio = await bare_aiosqlite(directory)
    sync = bare_sqlite3(directory)
    try:
        warm(directory)
        timings: dict[str, list[float]] = {"aiosqlite": [], "sqlite3": []}
        for _ in range(samples):
            conversation = f"raw-{rng.randint(1, conversations)}"
            start_id = rng.randrange(per_conversation)
            sql, params = page_sql(conversation, start_id, None)
            began = time.perf_counter()
            await aio.execute_fetchall(sql, params)
            middle = time.perf_counter()
            sync.execute(sql, params).fetchall()
            timings["aiosqlite"].append(middle - began)
            timings["sqlite3"].append(time.perf_counter() - middle)
    finally:
        await aio.close()
        sync.close()
    for name, durations in timings.items():
        metrics |= latency_ms(f"raw.page.{name}", durations)
    return metrics


# -- (b) appends -----------------------------------------------------------------------


async def append_benchmark(
    prefix: str, directory: Path, streams: Sequence[Sequence[EventBase]]
) -> Metrics:
    """Each stream appended event by event by its own task, into a fresh store
    (`measure_appends`)."""
    store = await SqliteStorage.open(directory)
    try:
        return await measure_appends(store, prefix, streams)
    finally:
        await store.close()


async def measure_appends(
    store: SqliteStorage, prefix: str, streams: Sequence[Sequence[EventBase]]
) -> Metrics:
    """Each stream appended event by event by its own task, into a new conversation of
    ``store``.

    Reports the acknowledged rate, the rate until everything is also searchable, per-append
    latency, and the index lag: how long ``wait_indexed`` takes, sampled while appending.
    """
    latencies: list[float] = []
    lags: list[float] = []

    async def append_all(conversation_id: str, events: Sequence[EventBase]) -> None:
        for event in events:
            began = time.perf_counter()
            await store.append(conversation_id, event)
            latencies.append(time.perf_counter() - began)

    async def sample_lag() -> None:
        while True:
            began = time.perf_counter()
            await store.wait_indexed()
            lags.append(time.perf_counter() - began)
            await asyncio.sleep(LAG_SAMPLE_INTERVAL)

    ids = [(await store.create_conversation(NewConversation())).id for _ in streams]
    gc.collect()
    sampler = asyncio.create_task(sample_lag())
    try:
        start = time.perf_counter()
        await asyncio.gather(*map(append_all, ids, streams))
        acknowledged = time.perf_counter()
        await store.wait_indexed()
        searchable = time.perf_counter()
    finally:
        sampler.cancel()
    total = len(latencies)
    return {
        f"{prefix}.rate": total / (acknowledged - start),
        f"{prefix}.rate_fts": total / (searchable - start),
        f"{prefix}.catch_up": (searchable - acknowledged) * 1e3,
        **latency_ms(prefix, latencies),
        f"{prefix}.max": max(latencies, default=0.0) * 1e3,
        **latency_ms(f"{prefix}.lag", lags),
    }


# -- (f) a big delete while appending --------------------------------------------------

DELETE_SETTLE = 0.3
"""Seconds of appending before the delete, and after the deleted events are gone."""


async def delete_benchmark(
    directory: Path, streams: Sequence[Sequence[EventBase]], sequential: Sequence[EventBase]
) -> Metrics:
    """One conversation holding every event of ``streams`` is deleted while another
    appends ``sequential`` event by event (each awaited): how long its appends wait
    before, during (from the delete's call until its events are gone from the log and the
    index) and how long the delete's call and the whole removal take."""
    store = await SqliteStorage.open(directory)
    try:
        doomed = (await store.create_conversation(NewConversation())).id
        events = [event for stream in streams for event in stream]
        for batch in chunks(events, 1000):
            await store.append_many(doomed, batch)
        writer = (await store.create_conversation(NewConversation())).id
        await store.wait_indexed()
        gc.collect()
        samples: list[tuple[float, float]] = []
        stop = asyncio.Event()

        async def append_steadily() -> None:
            index = 0
            while not stop.is_set():
                began = time.perf_counter()
                await store.append(writer, sequential[index % len(sequential)])
                samples.append((began, time.perf_counter() - began))
                index += 1

        appender = asyncio.create_task(append_steadily())
        try:
            await asyncio.sleep(DELETE_SETTLE)
            began = time.perf_counter()
            await store.delete_conversation(doomed)
            returned = time.perf_counter()
            await store.wait_indexed()
            gone = time.perf_counter()
            await asyncio.sleep(DELETE_SETTLE)
        finally:
            stop.set()
            await appender
    finally:
        await store.close()
        shutil.rmtree(directory, ignore_errors=True)
    before = [latency for start, latency in samples if start < began]
    during = [latency for start, latency in samples if began <= start <= gone]
    return {
        "delete.events": float(len(events)),
        "delete.call_ms": (returned - began) * 1e3,
        "delete.gone_ms": (gone - began) * 1e3,
        "delete.pause.max": max(during) * 1e3,
        "delete.before.max": max(before) * 1e3,
        "delete.appends": float(len(during)),
        **latency_ms("delete.before", before),
        **latency_ms("delete.during", during),
    }
