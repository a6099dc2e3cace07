"""The bare-SQLite baseline of the storage benchmark: reader connections set up as the
store's are (bare aiosqlite and plain sqlite3), the SQL the store runs for a page, a count
and a search, and the `Comparer` that times a question through all three.
"""

from __future__ import annotations

import gc
import sqlite3
import statistics
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiosqlite

from bench.common import Metrics
from events import EventFilter
from storage.sqlite.queries import count_query, fts_match_expression, page_query, search_all_query
from storage.sqlite.store import LOG_FILE, SEARCH_FILE

PAGE = 100
SEARCH_LIMIT = 20
CACHE_KIB = 65536


def latency_ms(prefix: str, samples: Sequence[float]) -> Metrics:
    """p50 and p99 of durations in seconds, as ``{prefix}.p50`` / ``.p99`` in ms
    (inclusive quantiles, unlike the nearest-rank `bench.common.latency`)."""
    if len(samples) < 2:
        return {f"{prefix}.{name}": value * 1e3 for name in ("p50", "p99") for value in samples}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"{prefix}.p50": cuts[49] * 1e3, f"{prefix}.p99": cuts[98] * 1e3}


async def bare_aiosqlite(directory: Path) -> aiosqlite.Connection:
    """A reader connection set up as the store's are, without the store around it."""
    connection = await aiosqlite.connect(directory / LOG_FILE, isolation_level=None)
    for sql, params in _reader_setup(directory):
        await connection.execute(sql, params)
    return connection


def bare_sqlite3(directory: Path) -> sqlite3.Connection:
    """The same as `bare_aiosqlite`, through plain sqlite3."""
    connection = sqlite3.connect(directory / LOG_FILE, isolation_level=None)
    for sql, params in _reader_setup(directory):
        connection.execute(sql, params)
    return connection


def _reader_setup(directory: Path) -> list[tuple[str, tuple[Any, ...]]]:
    """The statements that set a connection up as the store's readers are."""
    statements: list[tuple[str, tuple[Any, ...]]] = [
        (f"PRAGMA cache_size = -{CACHE_KIB}", ()),
        ("PRAGMA query_only = ON", ()),
    ]
    if (directory / SEARCH_FILE).exists():
        statements.append(("ATTACH DATABASE ? AS search", (str(directory / SEARCH_FILE),)))
    return statements


def page_sql(
    conversation_id: str, start_id: int, event_filter: EventFilter | None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL `search_events` runs for a forward page of `PAGE` from ``start_id``."""
    sql, params = page_query(
        conversation_id=conversation_id,
        start_id=start_id,
        end_id=None,
        reverse=False,
        filter=event_filter,
        limit=PAGE + 1,
    )
    return sql, tuple(params)


def count_sql(
    conversation_id: str, event_filter: EventFilter | None
) -> tuple[str, tuple[Any, ...]]:
    sql, params = count_query(
        conversation_id=conversation_id, start_id=0, end_id=None, filter=event_filter
    )
    return sql, tuple(params)


def search_sql(word: str, conversation_ids: list[str] | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL of `search_all` for the first `SEARCH_LIMIT` hits."""
    sql, params = search_all_query(
        match=fts_match_expression(word),
        conversation_ids=conversation_ids,
        owner=None,
        before_seq=None,
        limit=SEARCH_LIMIT + 1,
    )
    return sql, tuple(params)


@dataclass(frozen=True, slots=True)
class Probe:
    """One question asked of the store and, as the identical SQL, of bare SQLite.

    ``ours`` returns the answer in the same comparable form ``expect`` makes of the rows.
    """

    ours: Callable[[], Awaitable[list[Any]]]
    sql: str
    params: tuple[Any, ...]
    expect: Callable[[list[Any]], list[Any]]


class Comparer:
    """Times probes through the store, bare aiosqlite and plain sqlite3 on one file,
    rotating which goes first, and checks that all three give the same answer."""

    VARIANTS = ("ours", "aiosqlite", "sqlite3")

    def __init__(self, aio: aiosqlite.Connection, sync: sqlite3.Connection) -> None:
        self._aio = aio
        self._sync = sync

    async def measure(
        self, prefix: str, samples: int, make_probe: Callable[[], Probe], warmup: int = 20
    ) -> Metrics:
        timings: dict[str, list[float]] = {name: [] for name in self.VARIANTS}
        gc.collect()
        for index in range(warmup + samples):
            probe = make_probe()
            answers: dict[str, list[Any]] = {}
            for offset in range(len(self.VARIANTS)):
                name = self.VARIANTS[(index + offset) % len(self.VARIANTS)]
                start = time.perf_counter()
                answers[name] = await self._ask(name, probe)
                if index >= warmup:
                    timings[name].append(time.perf_counter() - start)
            if not answers["ours"] == answers["aiosqlite"] == answers["sqlite3"]:
                raise AssertionError(f"{prefix}: answers differ for {probe.sql} {probe.params}")
        metrics: Metrics = {}
        for name, durations in timings.items():
            metrics |= latency_ms(f"{prefix}.{name}", durations)
        return metrics

    async def _ask(self, name: str, probe: Probe) -> list[Any]:
        if name == "ours":
            return await probe.ours()
        if name == "aiosqlite":
            return probe.expect(list(await self._aio.execute_fetchall(probe.sql, probe.params)))
        return probe.expect(self._sync.execute(probe.sql, probe.params).fetchall())
