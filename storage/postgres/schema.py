"""The PostgreSQL schema and its migrations.

``threadline_schema`` counts the applied entries of `MIGRATIONS`; opening a store
applies the missing ones in one transaction, under an advisory lock so that several
processes starting at once migrate exactly once, and refuses a database a newer
threadline wrote.

Tables mirror the SQLite backend's: ``conversations`` (a ``key`` per conversation, its
public ``id`` unique), ``events`` (the per-conversation ``id`` is half of the primary
key, which is what keeps the sequence gapless and unforked across processes: a second
writer that picks a taken id fails and reloads), ``event_counts`` (per kind, kept by the
appends' own transactions) and ``api_keys``. Full-text search lives in ``event_docs``
(an event's ``tsvector`` by its ``seq``), filled by the indexer after the append (never
on the append path) from ``index_queue``, the ``seq`` of every event still to index,
which the append's own statement fills.
"""

from __future__ import annotations

import asyncpg

from storage.postgres import automation, cluster

MIGRATION_LOCK = 0x74687264  # an advisory lock key ("thrd")

MIGRATIONS: tuple[str, ...] = (
    # 1: conversations, the log, per-kind counts, API keys, full-text documents.
    """
    CREATE TABLE conversations (
        key BIGSERIAL PRIMARY KEY,
        id TEXT NOT NULL UNIQUE,
        owner TEXT,
        title TEXT NOT NULL DEFAULT '',
        status TEXT NOT NULL,
        agent_state TEXT,
        created_us BIGINT NOT NULL,
        updated_us BIGINT NOT NULL,
        repository TEXT,
        selected_branch TEXT,
        git_provider TEXT,
        trigger TEXT,
        cost_micros BIGINT NOT NULL DEFAULT 0,
        prompt_tokens BIGINT NOT NULL DEFAULT 0,
        completion_tokens BIGINT NOT NULL DEFAULT 0,
        iterations BIGINT NOT NULL DEFAULT 0,
        max_iterations BIGINT,
        max_budget_micros BIGINT,
        priority INTEGER NOT NULL DEFAULT 5,
        settings BYTEA NOT NULL
    );
    CREATE INDEX conversations_newest ON conversations (created_us DESC, key DESC);
    CREATE INDEX conversations_owner_newest ON conversations (owner, created_us DESC, key DESC);

    CREATE TABLE events (
        conv BIGINT NOT NULL REFERENCES conversations (key) ON DELETE CASCADE,
        id BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        kind TEXT NOT NULL,
        source TEXT,
        ts_us BIGINT NOT NULL,
        hidden BOOLEAN NOT NULL,
        text TEXT NOT NULL,
        data BYTEA NOT NULL,
        doc TSVECTOR,
        PRIMARY KEY (conv, id)
    );
    CREATE UNIQUE INDEX events_by_seq ON events (seq);
    CREATE INDEX events_by_kind ON events (conv, kind, id);
    CREATE INDEX events_to_index ON events (seq) WHERE doc IS NULL;
    CREATE INDEX events_search ON events USING GIN (doc);
    CREATE SEQUENCE events_seq;

    CREATE TABLE event_counts (
        conv BIGINT NOT NULL REFERENCES conversations (key) ON DELETE CASCADE,
        kind TEXT NOT NULL,
        n BIGINT NOT NULL,
        PRIMARY KEY (conv, kind)
    );

    CREATE TABLE api_keys (
        id BIGSERIAL PRIMARY KEY,
        "user" TEXT NOT NULL,
        digest BYTEA NOT NULL UNIQUE,
        label TEXT NOT NULL DEFAULT '',
        created_us BIGINT NOT NULL,
        revoked_us BIGINT
    );
    CREATE INDEX api_keys_by_user ON api_keys ("user");
    """,
    # 2: tasks, schedules, webhooks and their deliveries.
    automation.MIGRATION,
    # 3: the cluster ledger: processes and their leases, running and queued conversations.
    cluster.MIGRATION,
    # 4: search documents in a table of their own, fed by a queue the appends fill: the
    # indexer inserts a small row where it used to rewrite the whole event (a second row
    # version, and every index of the table again). No foreign key (its check would run
    # for every document): the indexer locks each conversation once per batch instead,
    # and deleting a conversation deletes its documents.
    """
    CREATE TABLE event_docs (
        conv BIGINT NOT NULL,
        seq BIGINT NOT NULL,
        doc TSVECTOR NOT NULL,
        PRIMARY KEY (conv, seq)
    );
    CREATE INDEX event_docs_search ON event_docs USING GIN (doc);
    CREATE TABLE index_queue (seq BIGINT PRIMARY KEY);
    INSERT INTO event_docs (conv, seq, doc) SELECT conv, seq, doc FROM events
        WHERE doc IS NOT NULL;
    INSERT INTO index_queue (seq) SELECT seq FROM events WHERE doc IS NULL;
    DROP INDEX events_to_index;
    DROP INDEX events_search;
    ALTER TABLE events DROP COLUMN doc;
    """,
)


async def migrate(connection: asyncpg.Connection) -> int:
    """Bring the database up to date; returns its version. Raises `RuntimeError` for a
    database written by a newer threadline."""
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS threadline_schema (version INTEGER NOT NULL)"
        )
        version = await connection.fetchval("SELECT max(version) FROM threadline_schema")
        version = version or 0
        if version > len(MIGRATIONS):
            raise RuntimeError(
                f"the database is at schema version {version}; this threadline knows "
                f"{len(MIGRATIONS)}"
            )
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            await connection.execute(script)
            await connection.execute("INSERT INTO threadline_schema VALUES ($1)", number)
        return len(MIGRATIONS)
