"""SQL for the api_keys table."""

from __future__ import annotations

from typing import Any

import aiosqlite

from storage.errors import ApiKeyNotFound
from storage.models import ApiKeyRecord
from storage.records import from_micros
from storage.sqlite.conversations import Work

COLUMNS = "id, user, label, created_us, revoked_us"


def to_record(row: Any) -> ApiKeyRecord:
    key_id, user, label, created_us, revoked_us = row
    return ApiKeyRecord(key_id, user, label, from_micros(created_us), revoked_us is not None)


def insert(user: str, digest: bytes, label: str, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> ApiKeyRecord:
        cursor = await connection.execute(
            "INSERT INTO api_keys (user, digest, label, created_us) VALUES (?, ?, ?, ?)",
            (user, digest, label, now_us),
        )
        return ApiKeyRecord(cursor.lastrowid or 0, user, label, from_micros(now_us), False)

    return work


def revoke(key_id: int, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> None:
        cursor = await connection.execute(
            "UPDATE api_keys SET revoked_us = coalesce(revoked_us, ?) WHERE id = ?",
            (now_us, key_id),
        )
        if cursor.rowcount == 0:
            raise ApiKeyNotFound(key_id)

    return work
