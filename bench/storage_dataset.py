"""The big dataset of the storage benchmark: ``--events`` in ``--conversations`` plus one
big conversation, loaded once with `append_many` from `LOAD_TASKS` concurrent tasks
(itself a throughput figure), checked, and kept for a later run with ``--keep``.
"""

from __future__ import annotations

import asyncio
import contextlib
import shutil
import sqlite3
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from bench.common import log
from bench.storage_baseline import PAGE
from bench.storage_events import chunks, script
from storage import NewConversation
from storage.sqlite import SqliteStorage
from storage.sqlite.store import LOG_FILE

LOAD_TASKS = 100
LOAD_BATCH = 100
MANIFEST = "dataset.json"


@dataclass(frozen=True, slots=True)
class Dataset:
    """The big store's conversations (id, events) and how often each marker word occurs."""

    directory: Path
    typical: list[tuple[str, int]]
    big: tuple[str, int]
    markers: dict[str, int]
    facts: dict[str, Any]
    """Load rate (absent when reused), file sizes, WAL size after the load."""


def conversation_sizes(events: int, conversations: int) -> list[int]:
    base, extra = divmod(events, conversations)
    return [base + (index < extra) for index in range(conversations)]


async def open_dataset(
    directory: Path, events: int, conversations: int, big: int, seed: int
) -> tuple[SqliteStorage, Dataset]:
    """Open the big store in ``directory``, loading it first unless a previous run left
    one of the same shape there."""
    shape = {"events": events, "conversations": conversations, "big": big, "seed": seed}
    manifest = directory / MANIFEST
    if manifest.exists():
        saved = orjson.loads(manifest.read_bytes())
        if saved["shape"] == shape:
            log(f"reusing the dataset in {directory}")
            store = await SqliteStorage.open(directory)
            await store.wait_indexed()  # a search file of another version is rebuilt
            typical = [(cid, count) for cid, count in saved["typical"]]
            big_conversation = (saved["big"][0], saved["big"][1])
            facts = saved["facts"] | {"reused": True}
            return store, Dataset(directory, typical, big_conversation, saved["markers"], facts)
    shutil.rmtree(directory, ignore_errors=True)
    store = await SqliteStorage.open(directory)
    plan = [big, *conversation_sizes(events, conversations)]
    markers: Counter[str] = Counter()
    ids, facts = await load(store, plan, seed, markers)
    facts |= checkpoint(directory)
    dataset = Dataset(
        directory, list(zip(ids[1:], plan[1:], strict=True)), (ids[0], big), dict(markers), facts
    )
    manifest.write_bytes(
        orjson.dumps(
            {
                "shape": shape,
                "typical": dataset.typical,
                "big": dataset.big,
                "markers": dataset.markers,
                "facts": facts,
            }
        )
    )
    return store, dataset


async def load(
    store: SqliteStorage, plan: Sequence[int], seed: int, markers: Counter[str], first: int = 0
) -> tuple[list[str], dict[str, Any]]:
    """Create a conversation per entry of ``plan`` and append its events with
    `append_many` in batches of `LOAD_BATCH`, from `LOAD_TASKS` concurrent tasks; the
    events of entry ``i`` are those of script ``first + i`` (a store grown in steps gets
    new conversations, not copies)."""
    ids = [(await store.create_conversation(NewConversation())).id for _ in plan]
    work = list(reversed(list(enumerate(zip(ids, plan, strict=True)))))
    appended = 0

    async def loader() -> None:
        nonlocal appended
        while work:
            index, (conversation_id, count) = work.pop()
            for batch in chunks(script(seed, first + index, markers).events(count), LOAD_BATCH):
                await store.append_many(conversation_id, batch)
                appended += len(batch)

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            log(f"  {appended:,} of {sum(plan):,} events appended")

    log(f"loading {sum(plan):,} events into {len(plan):,} conversations")
    reporter = asyncio.create_task(progress())
    try:
        start = time.perf_counter()
        await asyncio.gather(*(loader() for _ in range(LOAD_TASKS)))
        acknowledged = time.perf_counter()
        await store.wait_indexed()
        searchable = time.perf_counter()
    finally:
        reporter.cancel()
    log(f"loaded in {acknowledged - start:.0f} s, searchable after {searchable - start:.0f} s")
    return ids, {
        "load.rate": appended / (acknowledged - start),
        "load.rate_fts": appended / (searchable - start),
        "load.catch_up": (searchable - acknowledged) * 1e3,
    }


def checkpoint(directory: Path) -> dict[str, Any]:
    """Checkpoint and truncate the log's WAL so reads start from a settled file."""
    sizes = {f"size.{path.name}": path.stat().st_size for path in directory.glob("*.db*")}
    with contextlib.closing(sqlite3.connect(directory / LOG_FILE, isolation_level=None)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return {"files_after_load": sizes, "checkpoint_busy": bool(busy)}


async def verify(store: SqliteStorage, dataset: Dataset) -> None:
    """Every conversation holds the events appended to it, and full-text search finds
    exactly the events each marker word was put in."""
    for conversation_id, count in [*dataset.typical, dataset.big]:
        found = await store.count_events(conversation_id)
        if found != count:
            raise AssertionError(f"{conversation_id}: {found} events, {count} appended")
    for word, expected in dataset.markers.items():
        hits, cursor = 0, None
        while True:
            results = await store.search_all(word, limit=PAGE, cursor=cursor)
            hits += len(results.hits)
            if (cursor := results.next_cursor) is None:
                break
        if hits != expected:
            raise AssertionError(f"search_all({word!r}) finds {hits} events, {expected} have it")
