"""The read side of the storage benchmark: (c) `search_events` pages, (d) `count_events`
and (e) `search_all` over the big dataset, each compared with the identical SQL through
bare SQLite (`bench.storage_baseline.Comparer`); and SQLite's plan for each.
"""

from __future__ import annotations

import random
import sqlite3
from collections.abc import Callable, Sequence
from functools import partial
from typing import Any

from bench.common import Metrics
from bench.storage_baseline import (
    PAGE,
    SEARCH_LIMIT,
    Comparer,
    Probe,
    count_sql,
    page_sql,
    search_sql,
)
from bench.storage_dataset import Dataset
from bench.storage_events import COMMON_WORD, MODERATE_WORDS, RARE_WORDS
from events import EventFilter
from storage.sqlite import SqliteStorage

PAGE_FILTERS: dict[str, EventFilter | None] = {
    "none": None,
    "run": EventFilter(include_types=("run",)),
    "CmdRunAction": EventFilter(include_types=("CmdRunAction",)),
    "text": EventFilter(query=COMMON_WORD),
    "rare": EventFilter(query=RARE_WORDS[0]),
}
COUNT_FILTERS: dict[str, EventFilter | None] = {
    "none": None,
    "run": EventFilter(include_types=("run",)),
}
SEARCHES = ("common", "moderate", "rare", "moderate_one", "moderate_few")
FEW = 3
"""Conversations a ``moderate_few`` search is narrowed to."""
SCOPES = ("typical", "big")
"""A random typical conversation, or the one big conversation."""


class Reads:
    """Random reads of the big dataset, each compared with bare SQLite (`Comparer`)."""

    def __init__(
        self,
        store: SqliteStorage,
        dataset: Dataset,
        comparer: Comparer,
        samples: int,
        rng: random.Random,
    ) -> None:
        self._store = store
        self._dataset = dataset
        self._comparer = comparer
        self._samples = samples
        self._rng = rng

    def _conversation(self, scope: str) -> tuple[str, int]:
        return self._dataset.big if scope == "big" else self._rng.choice(self._dataset.typical)

    async def pages(
        self,
        filters: dict[str, EventFilter | None] = PAGE_FILTERS,
        scopes: Sequence[str] = SCOPES,
    ) -> Metrics:
        return await self._scoped("page", filters, self._page, scopes)

    async def counts(self) -> Metrics:
        return await self._scoped("count", COUNT_FILTERS, self._count, SCOPES)

    async def _scoped(
        self,
        kind: str,
        filters: dict[str, EventFilter | None],
        make_probe: Callable[[str, EventFilter | None], Probe],
        scopes: Sequence[str],
    ) -> Metrics:
        """Each filter in each of ``scopes``, as ``{kind}.{scope}.{filter name}``."""
        metrics: Metrics = {}
        for scope in scopes:
            for name, event_filter in filters.items():
                probe = partial(make_probe, scope, event_filter)
                metrics |= await self._comparer.measure(
                    f"{kind}.{scope}.{name}", self._samples, probe
                )
        return metrics

    async def searches(self, names: Sequence[str] = SEARCHES) -> Metrics:
        metrics: Metrics = {}
        for name in names:
            metrics |= await self._comparer.measure(
                f"search.{name}", self._samples, partial(self._search, name)
            )
        return metrics

    def _page(self, scope: str, event_filter: EventFilter | None) -> Probe:
        conversation_id, count = self._conversation(scope)
        start_id = self._rng.randrange(count)
        sql, params = page_sql(conversation_id, start_id, event_filter)

        async def ours() -> list[Any]:
            page = await self._store.search_events(
                conversation_id, start_id=start_id, filter=event_filter
            )
            return [event.id for event in page.events]

        return Probe(ours, sql, params, lambda rows: [row[0] for row in rows[:PAGE]])

    def _count(self, scope: str, event_filter: EventFilter | None) -> Probe:
        conversation_id, _ = self._conversation(scope)
        sql, params = count_sql(conversation_id, event_filter)

        async def ours() -> list[Any]:
            return [await self._store.count_events(conversation_id, filter=event_filter)]

        return Probe(ours, sql, params, lambda rows: [rows[0][0]])

    def _search(self, name: str) -> Probe:
        if name == "common":
            word = COMMON_WORD
        else:
            word = self._rng.choice(RARE_WORDS if name == "rare" else MODERATE_WORDS)
        within = None
        if name in ("moderate_one", "moderate_few"):
            count = 1 if name == "moderate_one" else FEW
            within = [self._conversation("typical")[0] for _ in range(count)]
        sql, params = search_sql(word, within)

        async def ours() -> list[Any]:
            results = await self._store.search_all(
                word, conversation_ids=within, limit=SEARCH_LIMIT
            )
            return [(hit.conversation_id, hit.event.id) for hit in results.hits]

        return Probe(
            ours, sql, params, lambda rows: [(row[1], row[2]) for row in rows[:SEARCH_LIMIT]]
        )


def query_plans(connection: sqlite3.Connection, dataset: Dataset) -> dict[str, list[str]]:
    """SQLite's plan for each kind of read, for the report."""
    conversation_id = dataset.big[0]
    statements: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, event_filter in PAGE_FILTERS.items():
        statements[f"page.{name}"] = page_sql(conversation_id, 1, event_filter)
    for name, event_filter in COUNT_FILTERS.items():
        statements[f"count.{name}"] = count_sql(conversation_id, event_filter)
    statements["search"] = search_sql(MODERATE_WORDS[0], None)
    statements["search.one"] = search_sql(MODERATE_WORDS[0], [conversation_id])
    return {
        name: [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        for name, (sql, params) in statements.items()
    }
