"""SQL for the conversations and API keys tables on PostgreSQL."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg
import orjson

from storage.common import COLUMNS, decode_cursor, stored_changes, to_record
from storage.errors import ConversationExists
from storage.models import ApiKeyRecord, ConversationPatch, ConversationRecord, NewConversation
from storage.records import cost_micros, from_micros

SELECT_ONE = f"SELECT {COLUMNS} FROM conversations WHERE id = $1"
INSERT = (
    "INSERT INTO conversations (id, owner, title, status, created_us, updated_us, "
    "repository, selected_branch, git_provider, trigger, max_iterations, max_budget_micros, "
    "priority, settings) VALUES ($1, $2, $3, $4, $5, $5, $6, $7, $8, $9, $10, $11, $12, $13) "
    f"RETURNING {COLUMNS}"
)
KEY_COLUMNS = 'id, "user", label, created_us, revoked_us'


def insert_conversation(
    new: NewConversation, now_us: int
) -> Callable[[Any], Awaitable[ConversationRecord]]:
    """A writer step that creates the conversation's row. Raises `ConversationExists`."""

    async def work(connection: asyncpg.Connection) -> ConversationRecord:
        try:
            row = await connection.fetchrow(INSERT, *insert_values(new, now_us))
        except asyncpg.UniqueViolationError:
            raise ConversationExists(new.id) from None
        return to_record(row)

    return work


def insert_values(new: NewConversation, now_us: int) -> tuple[Any, ...]:
    return (
        new.id, new.owner, new.title, new.status, now_us, new.repository,
        new.selected_branch, new.git_provider, new.trigger, new.max_iterations,
        None if new.max_budget is None else cost_micros(new.max_budget), new.priority,
        orjson.dumps(new.settings),
    )  # fmt: skip


def patch_statement(patch: ConversationPatch, now_us: int, first: int = 1) -> tuple[str, list[Any]]:
    """``UPDATE conversations SET ...`` (and ``updated_us``) with parameters numbered from
    ``first``; the caller adds the WHERE clause."""
    changes = stored_changes(patch)
    changes["updated_us"] = now_us
    assignments = ", ".join(
        f"{column} = ${number}" for number, column in enumerate(changes, start=first)
    )
    return f"UPDATE conversations SET {assignments}", list(changes.values())


def list_query(owner: str | None, cursor: str | None, limit: int) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if owner is not None:
        params.append(owner)
        clauses.append(f"owner = ${len(params)}")
    if cursor is not None:
        created_us, key = decode_cursor(cursor)
        params.extend((created_us, key))
        created, row = f"${len(params) - 1}", f"${len(params)}"
        clauses.append(f"(created_us < {created} OR (created_us = {created} AND key < {row}))")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return (
        f"SELECT {COLUMNS}, key FROM conversations {where} "
        f"ORDER BY created_us DESC, key DESC LIMIT ${len(params)}",
        params,
    )


def key_record(row: Any) -> ApiKeyRecord:
    key_id, user, label, created_us, revoked_us = row
    return ApiKeyRecord(key_id, user, label, from_micros(created_us), revoked_us is not None)
