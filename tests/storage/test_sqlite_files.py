"""SQLite specifics: schema migrations, the rebuildable search file, pragmas."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from pathlib import Path

import pytest

from events import build_filter
from storage import ConversationPatch, NewConversation, StorageError, StorageInUse
from storage.sqlite import SqliteStorage, writer
from storage.sqlite.schema import LOG_MIGRATIONS, migrate_log
from tests.storage.factories import numbered, say


def _version_1_database(path: Path) -> None:
    """A database exactly as threadline's schema version 1 wrote it, with data in it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as connection:
        connection.execute("PRAGMA journal_mode = WAL")
        assert migrate_log(connection, LOG_MIGRATIONS[:1]) == 1
        connection.execute(
            "INSERT INTO conversations (id, owner, title, status, created_us, updated_us) "
            "VALUES ('old', NULL, 'from v1', 'STOPPED', 1700000000000000, 1700000000000000)"
        )
        for event_id in range(3):
            data = (
                f'{{"id":{event_id},"timestamp":"2023-11-14T22:13:20.000000+00:00",'
                f'"source":"user","message":"legacy note {event_id}","action":"message",'
                f'"args":{{"content":"legacy note {event_id}"}}}}'
            )
            connection.execute(
                "INSERT INTO events (conv, id, kind, source, ts_us, hidden, text, data) "
                "VALUES (1, ?, 'action:message', 'user', 1700000000000000, 0, ?, ?)",
                (event_id, f"legacy note {event_id}", data.encode()),
            )


async def test_a_version_1_database_opens_and_keeps_working(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    _version_1_database(directory / "events.db")
    async with await SqliteStorage.open(directory) as storage:
        record = await storage.get_conversation("old")
        assert record.title == "from v1"
        page = await storage.search_events("old")
        assert [event.to_dict()["args"]["content"] for event in page.events] == [
            "legacy note 0",
            "legacy note 1",
            "legacy note 2",
        ]
        assert (await storage.append("old", say("new note"))).id == 3
        await storage.wait_indexed()  # the index is built from the migrated log
        assert len((await storage.search_all("legacy")).hits) == 3
        await storage.delete_conversation("old")  # uses the table migration 2 added
    with contextlib.closing(sqlite3.connect(directory / "events.db")) as connection:
        assert connection.execute("PRAGMA user_version").fetchone() == (len(LOG_MIGRATIONS),)


async def test_costs_stored_as_reals_become_exact_micro_units(tmp_path: Path) -> None:
    """Migration 5: a cost summed in floats (REAL) is read back as the decimal it meant,
    and a new cost is stored exactly."""
    directory = tmp_path / "data"
    directory.mkdir()
    with contextlib.closing(sqlite3.connect(directory / "events.db", isolation_level=None)) as db:
        assert migrate_log(db, LOG_MIGRATIONS[:4]) == 4
        db.execute(
            "INSERT INTO conversations (id, title, status, created_us, updated_us, "
            "accumulated_cost, max_budget) VALUES ('spent', '', 'STOPPED', 1, 1, ?, ?)",
            (0.001 + 0.008, 0.1 + 0.2),
        )
    assert 0.001 + 0.008 == 0.009000000000000001  # the noise this migration removes
    async with await SqliteStorage.open(directory) as storage:
        record = await storage.get_conversation("spent")
        assert (repr(record.accumulated_cost), repr(record.max_budget)) == ("0.009", "0.3")
        patch = ConversationPatch(accumulated_cost=0.1 + 0.2 + 0.000001)
        record = await storage.update_conversation("spent", patch)
        assert repr(record.accumulated_cost) == "0.300001"
    with contextlib.closing(sqlite3.connect(directory / "events.db")) as db:
        assert db.execute(
            "SELECT cost_micros, max_budget_micros FROM conversations"
        ).fetchone() == (
            300001,
            300000,
        )


async def test_a_database_from_a_newer_version_is_refused(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    with contextlib.closing(sqlite3.connect(directory / "events.db")) as connection:
        connection.execute(f"PRAGMA user_version = {len(LOG_MIGRATIONS) + 1}")
    with pytest.raises(RuntimeError, match="schema version"):
        await SqliteStorage.open(directory)


async def test_the_search_file_is_rebuilt_when_lost(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    async with await SqliteStorage.open(directory) as storage:
        conversation = await storage.create_conversation(NewConversation())
        await storage.append_many(conversation.id, [say(f"rebuild me {i}") for i in range(40)])
        await storage.wait_indexed()
    for name in ("search.db", "search.db-wal", "search.db-shm"):
        (directory / name).unlink(missing_ok=True)
    async with await SqliteStorage.open(directory) as storage:
        await storage.wait_indexed()
        results = await storage.search_all("rebuild", limit=100)
        assert sorted(hit.event.id for hit in results.hits) == list(range(40))


async def test_the_log_file_is_in_wal_mode(tmp_path: Path) -> None:
    async with await SqliteStorage.open(tmp_path / "data"):
        pass
    with contextlib.closing(sqlite3.connect(tmp_path / "data" / "events.db")) as connection:
        assert connection.execute("PRAGMA journal_mode").fetchone() == ("wal",)


async def test_one_owner_per_data_directory(tmp_path: Path) -> None:
    async with await SqliteStorage.open(tmp_path / "data") as owner:
        with pytest.raises(StorageInUse):
            await SqliteStorage.open(tmp_path / "data")
        async with await SqliteStorage.open(tmp_path / "data", owner=False) as admin:
            await admin.add_api_key("carol", b"d")
        assert (await owner.find_api_key(b"d")) is not None


@pytest.mark.parametrize(
    "damage",
    [
        "PRAGMA user_version = 0",  # an index written by another version
        "UPDATE search_state SET indexed_through = indexed_through + 1000",  # ahead of the log
    ],
)
async def test_a_search_file_that_does_not_fit_is_rebuilt(tmp_path: Path, damage: str) -> None:
    directory = tmp_path / "data"
    async with await SqliteStorage.open(directory) as storage:
        conversation = await storage.create_conversation(NewConversation())
        await storage.append_many(conversation.id, [say(f"keep me {i}") for i in range(10)])
        await storage.wait_indexed()
    with contextlib.closing(sqlite3.connect(directory / "search.db", isolation_level=None)) as db:
        db.execute(damage)
    async with await SqliteStorage.open(directory) as storage:
        await storage.append(conversation.id, say("keep me too"))
        await storage.wait_indexed()
        hits = (await storage.search_all("keep", limit=100)).hits
        assert sorted(hit.event.id for hit in hits) == list(range(11))


async def test_an_admin_handle_has_no_search_index_to_wait_for(tmp_path: Path) -> None:
    async with await SqliteStorage.open(tmp_path / "data", owner=False) as admin:
        with pytest.raises(StorageError, match="owner"):
            await admin.wait_indexed()


async def test_forgotten_id_counters_reload_exactly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(writer, "MAX_CACHED_STREAMS", 2)
    async with await SqliteStorage.open(tmp_path / "data") as storage:
        ids = [(await storage.create_conversation(NewConversation())).id for _ in range(5)]
        for _ in range(4):
            for conversation_id in ids:  # round robin: every append evicts someone
                await storage.append(conversation_id, say("tick"))
        await asyncio.gather(*(storage.append(cid, say("tock")) for cid in ids))
        for conversation_id in ids:
            page = await storage.search_events(conversation_id)
            assert [event.id for event in page.events] == list(range(5))
            assert (
                await storage.count_events(
                    conversation_id, filter=build_filter(include_types=["message"])
                )
                == 5
            )


async def test_pages_of_recent_events_from_memory_are_the_logs(tmp_path: Path) -> None:
    """Unfiltered forward pages within a conversation's recent tail are answered from
    memory (`SqliteStorage.search_events`): the same pages the log gives (read here by a
    handle that has no tail), across batches, the tail's reach, and a delete and
    re-creation under the same id."""
    async with await SqliteStorage.open(tmp_path / "data") as owner:
        await owner.create_conversation(NewConversation(id="c"))
        for start in range(0, 300, 30):
            batch = range(start, start + 30)
            await asyncio.gather(*(owner.append("c", numbered(i)) for i in batch))
        async with await SqliteStorage.open(tmp_path / "data", owner=False) as log:
            for start_id in (0, 1, 43, 44, 45, 250, 299, 300, 301):
                for limit in (1, 7, 100):
                    mine = await owner.search_events("c", start_id=start_id, limit=limit)
                    theirs = await log.search_events("c", start_id=start_id, limit=limit)
                    assert mine == theirs, (start_id, limit)
            await owner.delete_conversation("c")
            await owner.create_conversation_with_events(
                NewConversation(id="c"), [say("again"), say("and again")]
            )
            mine = await owner.search_events("c", start_id=1)
            assert mine == await log.search_events("c", start_id=1)
            assert [event.id for event in mine.events] == [1]
