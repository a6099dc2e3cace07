"""SQL for the conversations table: rows to records, cursors, and the write steps the
writer runs in its transactions."""

from __future__ import annotations

import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import orjson

from storage.common import COLUMNS, decode_cursor, stored_changes, to_record
from storage.errors import ConversationExists, ConversationNotFound
from storage.models import ConversationPatch, ConversationRecord, NewConversation
from storage.records import cost_micros

SELECT_ONE = f"SELECT {COLUMNS} FROM conversations WHERE id = ?"

Work = Callable[[aiosqlite.Connection], Awaitable[Any]]
Insert = Callable[[sqlite3.Connection], Any]
"""A creation's own rows, written in the connection's thread inside the writer's
transaction (`storage.sqlite.writer.LogWriter.create_with_events`)."""


def list_query(owner: str | None, cursor: str | None, limit: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if owner is not None:
        clauses.append("owner = ?")
        params.append(owner)
    if cursor is not None:
        created_us, key = decode_cursor(cursor)
        clauses.append("(created_us < ? OR (created_us = ? AND key < ?))")
        params.extend((created_us, created_us, key))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return (
        f"SELECT {COLUMNS}, key FROM conversations {where} "
        "ORDER BY created_us DESC, key DESC LIMIT ?",
        params,
    )


def insert(new: NewConversation, now_us: int) -> Insert:
    def step(connection: sqlite3.Connection) -> ConversationRecord:
        try:
            rows = connection.execute(
                "INSERT INTO conversations (id, owner, title, status, created_us, updated_us, "
                "repository, selected_branch, git_provider, trigger, max_iterations, "
                "max_budget_micros, priority, settings) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
                f"RETURNING {COLUMNS}",
                (
                    new.id,
                    new.owner,
                    new.title,
                    new.status,
                    now_us,
                    now_us,
                    new.repository,
                    new.selected_branch,
                    new.git_provider,
                    new.trigger,
                    new.max_iterations,
                    None if new.max_budget is None else cost_micros(new.max_budget),
                    new.priority,
                    orjson.dumps(new.settings),
                ),
            ).fetchall()
        except sqlite3.IntegrityError:
            raise ConversationExists(new.id) from None
        return to_record(rows[0])

    return step


def patch_statement(patch: ConversationPatch, now_us: int) -> tuple[str, list[Any]]:
    """``UPDATE conversations SET ...`` for the fields ``patch`` sets (and ``updated_us``);
    the caller adds the WHERE clause."""
    changes = stored_changes(patch)
    changes["updated_us"] = now_us
    assignments = ", ".join(f"{column} = ?" for column in changes)
    return f"UPDATE conversations SET {assignments}", list(changes.values())


def update(conversation_id: str, patch: ConversationPatch, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> ConversationRecord:
        sql, params = patch_statement(patch, now_us)
        rows = list(
            await connection.execute_fetchall(
                f"{sql} WHERE id = ? RETURNING {COLUMNS}", (*params, conversation_id)
            )
        )
        if not rows:
            raise ConversationNotFound(conversation_id)
        return to_record(rows[0])

    return work


def delete(conversation_id: str) -> Work:
    async def work(connection: aiosqlite.Connection) -> None:
        rows = list(
            await connection.execute_fetchall(
                "SELECT key FROM conversations WHERE id = ?", (conversation_id,)
            )
        )
        if not rows:
            raise ConversationNotFound(conversation_id)
        (key,) = rows[0]
        # Reads find events through the record, so the conversation is gone for them at
        # once; its events leave in chunks (storage/sqlite/reaper.py).
        await connection.execute("DELETE FROM conversations WHERE key = ?", (key,))
        await connection.execute("INSERT INTO doomed_conversations (key) VALUES (?)", (key,))
        # What belongs to the conversation goes with it (see storage.automation).
        for table, column in _BELONGING:
            await connection.execute(f"DELETE FROM {table} WHERE {column} = ?", (conversation_id,))

    return work


_BELONGING = (
    ("tasks", "id"),
    ("schedules", "id"),
    ("webhooks", "conversation_id"),
    ("webhook_deliveries", "conversation_id"),
)
