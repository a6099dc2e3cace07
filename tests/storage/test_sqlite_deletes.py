"""SQLite: a deleted conversation's events leave in chunks (storage/sqlite/reaper.py)."""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path

import pytest

from storage import ConversationNotFound, NewConversation
from storage.sqlite import SqliteStorage
from tests.storage.factories import say

EVENTS = 1000
CHUNK = 100


def _left_in_log(directory: Path) -> tuple[int, int]:
    """(event rows of conversations without a record, conversations still doomed)."""
    with contextlib.closing(sqlite3.connect(directory / "events.db")) as db:
        orphans = db.execute(
            "SELECT count(*) FROM events WHERE conv NOT IN (SELECT key FROM conversations)"
        ).fetchone()[0]
        doomed = db.execute("SELECT count(*) FROM doomed_conversations").fetchone()[0]
    return orphans, doomed


async def _big_conversation(store: SqliteStorage, text: str) -> str:
    conversation_id = (await store.create_conversation(NewConversation())).id
    for first in range(0, EVENTS, 250):
        batch = [say(f"{text} {n}") for n in range(first, first + 250)]
        await store.append_many(conversation_id, batch)
    return conversation_id


async def test_appends_interleave_with_a_big_delete(tmp_path: Path) -> None:
    """An append queued right after the delete returns before the deleted events are all
    gone (before: one transaction removed them all first), and the conversation is gone
    for readers at once."""
    directory = tmp_path / "data"
    async with await SqliteStorage.open(directory, delete_chunk=CHUNK) as store:
        doomed = await _big_conversation(store, "doomed words")
        other = (await store.create_conversation(NewConversation())).id
        await store.wait_indexed()
        await store.delete_conversation(doomed)
        await store.append(other, say("written during the delete"))
        orphans, _ = _left_in_log(directory)
        assert orphans > 0
        with pytest.raises(ConversationNotFound):
            await store.search_events(doomed)
        assert (await store.search_all("doomed")).hits == []
        await store.wait_indexed()
        assert _left_in_log(directory) == (0, 0)
        # The index forgot them too: a new conversation's hit is the only one.
        await store.append(other, say("doomed once more"))
        await store.wait_indexed()
        assert [hit.event.id for hit in (await store.search_all("doomed")).hits] == [1]


async def test_a_delete_cut_short_resumes_when_the_store_opens_again(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    async with await SqliteStorage.open(directory, delete_chunk=CHUNK) as store:
        doomed = await _big_conversation(store, "leftover")
        await store.wait_indexed()
        await store.delete_conversation(doomed)
    orphans, still_doomed = _left_in_log(directory)
    assert orphans > 0
    assert still_doomed == 1
    async with await SqliteStorage.open(directory, delete_chunk=CHUNK) as store:
        assert (await store.search_all("leftover")).hits == []
        await store.wait_indexed()
        assert _left_in_log(directory) == (0, 0)
        again = (await store.create_conversation(NewConversation(id=doomed))).id
        assert (await store.search_events(again)).events == []
        await store.append(again, say("leftover, new"))
        await store.wait_indexed()
        assert [hit.event.id for hit in (await store.search_all("leftover")).hits] == [0]
