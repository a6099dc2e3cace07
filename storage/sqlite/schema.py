"""Schemas of the two SQLite files and their migrations.

``events.db`` holds conversations and the log; its ``PRAGMA user_version`` is the number
of `LOG_MIGRATIONS` applied, and opening a file applies the missing ones in one
transaction. ``search.db`` holds the full-text index, which is derived data: when its
version is not `SEARCH_VERSION` it is dropped and rebuilt from the log.
"""

from __future__ import annotations

import sqlite3

LOG_MIGRATIONS: tuple[str, ...] = (
    # 1: conversations and the event log.
    """
    CREATE TABLE conversations (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner TEXT,
        title TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        agent_state TEXT,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        repository TEXT,
        selected_branch TEXT,
        git_provider TEXT,
        trigger TEXT,
        accumulated_cost REAL NOT NULL DEFAULT 0,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        settings BLOB NOT NULL DEFAULT '{}'
    );
    CREATE INDEX conversations_newest ON conversations (created_us DESC, key DESC);
    CREATE INDEX conversations_owner_newest ON conversations (owner, created_us DESC, key DESC);

    CREATE TABLE events (
        seq INTEGER PRIMARY KEY AUTOINCREMENT,
        conv INTEGER NOT NULL REFERENCES conversations (key),
        id INTEGER NOT NULL,
        kind TEXT NOT NULL,
        source TEXT,
        ts_us INTEGER NOT NULL,
        hidden INTEGER NOT NULL DEFAULT 0,
        text TEXT NOT NULL,
        data BLOB NOT NULL
    );
    CREATE UNIQUE INDEX events_by_conversation ON events (conv, id);
    CREATE INDEX events_by_kind ON events (conv, kind, id);
    """,
    # 2: the full-text index moved to its own file; deletions reach it through a queue.
    """
    CREATE TABLE search_purges (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        seq INTEGER NOT NULL,
        text TEXT NOT NULL
    );
    """,
    # 3: API keys (stored as digests) for multi-user servers.
    """
    CREATE TABLE api_keys (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        user TEXT NOT NULL,
        digest BLOB NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_us INTEGER NOT NULL,
        revoked_us INTEGER
    );
    CREATE INDEX api_keys_by_user ON api_keys (user);
    """,
    # 4: control flags and scheduling: iteration and budget limits, queue priority.
    """
    ALTER TABLE conversations ADD COLUMN iterations INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN max_iterations INTEGER;
    ALTER TABLE conversations ADD COLUMN max_budget REAL;
    ALTER TABLE conversations ADD COLUMN priority INTEGER NOT NULL DEFAULT 5;
    """,
    # 5: tasks (one per conversation, same id), schedules (each with a log conversation),
    # webhooks (one per conversation) and every delivery attempt.
    """
    CREATE TABLE tasks (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        owner TEXT,
        kind TEXT NOT NULL,
        status TEXT NOT NULL,
        detail TEXT NOT NULL DEFAULT '',
        priority INTEGER NOT NULL,
        timeout_seconds REAL,
        spec BLOB NOT NULL,
        outcome BLOB NOT NULL DEFAULT '{}',
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL,
        started_us INTEGER,
        finished_us INTEGER
    );
    CREATE INDEX tasks_newest ON tasks (created_us DESC, key DESC);
    CREATE INDEX tasks_owner_newest ON tasks (owner, created_us DESC, key DESC);
    CREATE INDEX tasks_by_status ON tasks (status);

    CREATE TABLE schedules (
        key INTEGER PRIMARY KEY AUTOINCREMENT,
        id TEXT NOT NULL UNIQUE,
        flow_id TEXT NOT NULL UNIQUE,
        owner TEXT,
        cron_expression TEXT NOT NULL,
        timezone TEXT NOT NULL,
        is_enabled INTEGER NOT NULL,
        description TEXT NOT NULL DEFAULT '',
        flow BLOB NOT NULL,
        overlap TEXT NOT NULL,
        catch_up TEXT NOT NULL,
        budget_cap REAL,
        spent REAL NOT NULL DEFAULT 0,
        last_execution_us INTEGER,
        next_execution_us INTEGER,
        execution_count INTEGER NOT NULL DEFAULT 0,
        last_conversation_id TEXT,
        pending INTEGER NOT NULL DEFAULT 0,
        created_us INTEGER NOT NULL,
        updated_us INTEGER NOT NULL
    );
    CREATE INDEX schedules_owner ON schedules (owner, key);

    CREATE TABLE webhooks (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id TEXT NOT NULL UNIQUE,
        owner TEXT,
        origin TEXT NOT NULL,
        url TEXT NOT NULL,
        secret TEXT NOT NULL,
        event_kinds BLOB NOT NULL,
        delivered_through INTEGER NOT NULL DEFAULT -1,
        created_us INTEGER NOT NULL
    );

    CREATE TABLE webhook_deliveries (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        webhook_id INTEGER NOT NULL,
        owner TEXT,
        origin TEXT NOT NULL,
        conversation_id TEXT NOT NULL,
        event_id INTEGER NOT NULL,
        event_kind TEXT NOT NULL,
        attempt INTEGER NOT NULL,
        outcome TEXT NOT NULL,
        http_status INTEGER,
        error TEXT,
        duration_ms INTEGER NOT NULL,
        at_us INTEGER NOT NULL
    );
    CREATE INDEX deliveries_by_origin ON webhook_deliveries (origin, id);
    CREATE INDEX deliveries_by_conversation ON webhook_deliveries (conversation_id, id);
    """,
    # 6: costs exactly, in integer micro-units of the currency (REAL summed float noise).
    """
    ALTER TABLE conversations ADD COLUMN cost_micros INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE conversations ADD COLUMN max_budget_micros INTEGER;
    UPDATE conversations SET
        cost_micros = CAST(round(accumulated_cost * 1000000) AS INTEGER),
        max_budget_micros = CAST(round(max_budget * 1000000) AS INTEGER);
    ALTER TABLE conversations DROP COLUMN accumulated_cost;
    ALTER TABLE conversations DROP COLUMN max_budget;
    """,
    # 7: a deleted conversation's events leave in chunks (storage/sqlite/reaper.py); the
    # full-text index keys entries by conversation too, so its purges carry the key.
    """
    CREATE TABLE doomed_conversations (key INTEGER PRIMARY KEY);
    ALTER TABLE search_purges ADD COLUMN conv INTEGER NOT NULL DEFAULT 0;
    """,
)

SEARCH_VERSION = 2
# `conv` holds one token per entry, "c<conversation key>": a search narrowed to a few
# conversations intersects their entries in the index instead of walking every hit.
SEARCH_SCHEMA = """
CREATE VIRTUAL TABLE events_fts USING fts5(text, conv, content='', columnsize=0);
-- Substrings (`EventFilter.query`): the text's trigrams, exactly as stored (it is
-- casefolded already), and the conversation as one trigram of its own (`CONV_TRIGRAM`).
-- Rowids only (detail='none'): candidates, which the page query checks with instr().
CREATE VIRTUAL TABLE events_substrings USING fts5(
    text, conv, content='', columnsize=0, detail='none', tokenize='trigram case_sensitive 1'
);
CREATE TABLE indexed_events (seq INTEGER PRIMARY KEY);
CREATE TABLE search_state (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    indexed_through INTEGER NOT NULL,
    purged_through INTEGER NOT NULL
);
"""


def conv_trigram(column: str) -> str:
    """SQL for the one trigram standing for a conversation key in ``events_substrings``:
    three code points of the Supplementary Private Use Area-A, the key in base 65534."""
    return (
        f"char(983040 + ({column} / 4294705156) % 65534, "
        f"983040 + ({column} / 65534) % 65534, 983040 + {column} % 65534)"
    )


def migrate_log(
    connection: sqlite3.Connection, migrations: tuple[str, ...] = LOG_MIGRATIONS
) -> int:
    """Bring ``events.db`` up to date; returns the version it is now at.

    Raises `RuntimeError` for a file written by a newer threadline.
    """
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version > len(migrations):
        raise RuntimeError(
            f"events.db is at schema version {version}; this threadline knows {len(migrations)}"
        )
    if version == len(migrations):
        return version
    connection.execute("BEGIN IMMEDIATE")
    try:
        for script in migrations[version:]:
            for statement in _statements(script):
                connection.execute(statement)
        connection.execute(f"PRAGMA user_version = {len(migrations)}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise
    return len(migrations)


def prepare_search(connection: sqlite3.Connection, purged_through: int, last_seq: int) -> None:
    """Create the search index, or rebuild it from scratch when its version is not
    current or it claims more than the log holds (the log lost its newest commits in a
    power cut that the index survived: those sequence numbers will be reused)."""
    (version,) = connection.execute("PRAGMA user_version").fetchone()
    if version == SEARCH_VERSION:
        (indexed_through,) = connection.execute(
            "SELECT indexed_through FROM search_state"
        ).fetchone()
        if indexed_through <= last_seq:
            return
    connection.execute("BEGIN IMMEDIATE")
    try:
        connection.execute("DROP TABLE IF EXISTS events_fts")
        connection.execute("DROP TABLE IF EXISTS events_substrings")
        connection.execute("DROP TABLE IF EXISTS indexed_events")
        connection.execute("DROP TABLE IF EXISTS search_state")
        for statement in _statements(SEARCH_SCHEMA):
            connection.execute(statement)
        connection.execute(
            "INSERT INTO search_state (singleton, indexed_through, purged_through) "
            "VALUES (1, 0, ?)",
            (purged_through,),
        )
        connection.execute(f"PRAGMA user_version = {SEARCH_VERSION}")
        connection.execute("COMMIT")
    except BaseException:
        connection.execute("ROLLBACK")
        raise


def _statements(script: str) -> list[str]:
    return [statement.strip() for statement in script.split(";") if statement.strip()]
