"""SQL for the conversations table: rows to records, cursors, and the write steps the
writer runs in its transactions."""

from __future__ import annotations

import base64
import binascii
import sqlite3
from collections.abc import Awaitable, Callable
from typing import Any

import aiosqlite
import orjson

from storage.errors import ConversationExists, ConversationNotFound, InvalidCursor
from storage.models import ConversationPatch, ConversationRecord, NewConversation
from storage.records import cost_micros, from_cost_micros, from_micros

COLUMNS = (
    "id, owner, title, status, agent_state, created_us, updated_us, repository, "
    "selected_branch, git_provider, trigger, cost_micros, prompt_tokens, "
    "completion_tokens, iterations, max_iterations, max_budget_micros, priority, settings"
)
SELECT_ONE = f"SELECT {COLUMNS} FROM conversations WHERE id = ?"

Work = Callable[[aiosqlite.Connection], Awaitable[Any]]


def to_record(row: sqlite3.Row | tuple[Any, ...]) -> ConversationRecord:
    (
        conversation_id, owner, title, status, agent_state, created_us, updated_us,
        repository, selected_branch, git_provider, trigger, cost, prompt_tokens,
        completion_tokens, iterations, max_iterations, max_budget, priority, settings,
    ) = row  # fmt: skip
    return ConversationRecord(
        id=conversation_id,
        owner=owner,
        title=title,
        status=status,
        agent_state=agent_state,
        created_at=from_micros(created_us),
        updated_at=from_micros(updated_us),
        repository=repository,
        selected_branch=selected_branch,
        git_provider=git_provider,
        trigger=trigger,
        accumulated_cost=from_cost_micros(cost),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        iterations=iterations,
        max_iterations=max_iterations,
        max_budget=None if max_budget is None else from_cost_micros(max_budget),
        priority=priority,
        settings=orjson.loads(settings),
    )


def encode_cursor(created_us: int, key: int) -> str:
    return base64.urlsafe_b64encode(f"{created_us}:{key}".encode()).decode().rstrip("=")


MAX_SQLITE_INT = 2**63 - 1


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Raises `InvalidCursor` for anything `encode_cursor` could not have made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_us, key = base64.urlsafe_b64decode(padded).decode().split(":")
        values = int(created_us), int(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if not all(-MAX_SQLITE_INT <= value <= MAX_SQLITE_INT for value in values):
        raise InvalidCursor(cursor)
    return values


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


def insert(new: NewConversation, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> ConversationRecord:
        try:
            rows = await connection.execute_fetchall(
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
            )
        except sqlite3.IntegrityError:
            raise ConversationExists(new.id) from None
        return to_record(next(iter(rows)))

    return work


def patch_statement(patch: ConversationPatch, now_us: int) -> tuple[str, list[Any]]:
    """``UPDATE conversations SET ...`` for the fields ``patch`` sets (and ``updated_us``);
    the caller adds the WHERE clause."""
    changes = patch.changes()
    for name, column in (("accumulated_cost", "cost_micros"), ("max_budget", "max_budget_micros")):
        if name in changes:
            value = changes.pop(name)
            changes[column] = None if value is None else cost_micros(value)
    if "settings" in changes:
        changes["settings"] = orjson.dumps(changes["settings"])
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
        await connection.execute(
            "INSERT INTO search_purges (seq, text) SELECT seq, text FROM events WHERE conv = ?",
            (key,),
        )
        await connection.execute("DELETE FROM events WHERE conv = ?", (key,))
        await connection.execute("DELETE FROM conversations WHERE key = ?", (key,))

    return work
