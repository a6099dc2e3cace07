"""SQLite: the WAL stays bounded under a sustained burst of appends
(storage/sqlite/checkpointer.py): concurrent checkpoints alone never let the writer start
it over, so it held every frame written since the burst began."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from pathlib import Path

import aiosqlite
import pytest

import storage.sqlite.store as sqlite_store
from events import EventFilter
from storage import NewConversation
from storage.sqlite import SqliteStorage
from storage.sqlite.checkpointer import checkpoint_in_writer
from tests.storage.factories import say

WRITERS = 40
BURST_SECONDS = 3.0
RESTART_BYTES = 1024 * 1024
SAID = EventFilter(query="burst")


async def test_a_sustained_burst_keeps_the_wal_bounded(tmp_path: Path) -> None:
    store = await SqliteStorage.open(
        tmp_path, checkpoint_interval=0.05, wal_restart_bytes=RESTART_BYTES
    )
    try:
        conversations = [
            (await store.create_conversation(NewConversation())).id for _ in range(WRITERS)
        ]
        appended = dict.fromkeys(conversations, 0)
        deadline = time.monotonic() + BURST_SECONDS
        text = "the burst goes on " * 5

        async def writer(conversation_id: str) -> None:
            while time.monotonic() < deadline:
                await store.append(conversation_id, say(f"{text}{appended[conversation_id]}"))
                appended[conversation_id] += 1

        await asyncio.gather(*(writer(c) for c in conversations))
        wal = (tmp_path / "events.db-wal").stat().st_size
        database = (tmp_path / "events.db").stat().st_size
        # Each commit rewrites the pages it touches, and commits come by the thousand: a
        # WAL never started over holds all of them, many times the database's size
        # (~20x here); one started over holds a few checkpoints' worth.
        assert wal < database, f"WAL {wal:,} B beside a {database:,} B database"
    finally:
        await store.close()
    reopened = await SqliteStorage.open(tmp_path)  # from the files alone
    try:
        for conversation_id, count in appended.items():
            page = await reopened.search_events(conversation_id, reverse=True, limit=2)
            assert [event.id for event in page.events] == [count - 1, count - 2]
            assert await reopened.count_events(conversation_id, filter=SAID) == count
    finally:
        await reopened.close()


async def test_a_reader_holding_an_old_snapshot_is_waited_out_without_pausing_the_writer(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a reader's snapshot keeps frames from being copied back, no start-over can
    succeed: the writer is not paused for one. Once the reader is done, the WAL starts
    over again."""
    passes: list[tuple[int, int]] = []

    async def counted(connection: aiosqlite.Connection) -> tuple[int, int]:
        result = await checkpoint_in_writer(connection)
        passes.append(result)
        return result

    monkeypatch.setattr(sqlite_store, "checkpoint_in_writer", counted)
    store = await SqliteStorage.open(
        tmp_path, checkpoint_interval=0.05, wal_restart_bytes=RESTART_BYTES
    )
    try:
        conversations = [
            (await store.create_conversation(NewConversation())).id for _ in range(WRITERS)
        ]

        async def burst(seconds: float) -> None:
            deadline = time.monotonic() + seconds

            async def writer(conversation_id: str) -> None:
                while time.monotonic() < deadline:
                    await store.append(conversation_id, say("the burst goes on " * 5))

            await asyncio.gather(*(writer(c) for c in conversations))

        with contextlib.closing(sqlite3.connect(tmp_path / "events.db")) as reader:
            reader.execute("BEGIN")
            reader.execute("SELECT count(*) FROM events").fetchone()  # its snapshot, held
            await burst(1.5)
            assert passes == []
            reader.rollback()
        await burst(1.5)
        assert passes, "no start-over once the reader was done"
        assert all(copied == frames for frames, copied in passes)
    finally:
        await store.close()
