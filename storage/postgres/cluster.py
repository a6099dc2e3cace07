"""The cluster ledger on PostgreSQL (`storage.cluster`): two tables, one advisory lock.

Decisions run in a transaction on a connection of their own that first takes
``pg_advisory_xact_lock``, so they are serialized across every process of the database
(and released by the commit, or by the server if the process dies). Leases are times of
the database's clock (``clock_timestamp()``), so the processes' clocks never matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

import asyncpg

from storage.cluster import LedgerRow
from storage.errors import StorageClosed, StorageError

MIGRATION = """
CREATE TABLE cluster_nodes (
    node TEXT PRIMARY KEY,
    expires TIMESTAMPTZ NOT NULL
);
CREATE TABLE cluster_runs (
    conv TEXT PRIMARY KEY REFERENCES conversations (id) ON DELETE CASCADE,
    owner TEXT,
    priority INTEGER NOT NULL,
    state TEXT NOT NULL CHECK (state IN ('running', 'queued')),
    node TEXT,
    ord BIGSERIAL,
    last_active_us BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX cluster_runs_by_node ON cluster_runs (node);
"""

_ROWS = "SELECT conv, owner, priority, state, node, ord, last_active_us FROM cluster_runs"
T = TypeVar("T")
Read = Callable[[Callable[[asyncpg.Connection], Awaitable[T]]], Awaitable[T]]
_FAILURES = (asyncpg.PostgresError, asyncpg.InterfaceError, OSError)


def lock_key(schema: str | None) -> int:
    """One lock per schema (stores sharing a database in other schemas never wait)."""
    return 0x74686C63_00000000 | zlib.crc32((schema or "public").encode())


class PostgresTransaction:
    def __init__(self, connection: asyncpg.Connection, rows: list[LedgerRow]) -> None:
        self._connection = connection
        self.rows = rows

    async def add(
        self, conversation_id: str, owner: str | None, priority: int, node: str | None
    ) -> LedgerRow:
        record = await self._connection.fetchrow(
            "INSERT INTO cluster_runs (conv, owner, priority, state, node, last_active_us)"
            " VALUES ($1, $2, $3, $4, $5, (extract(epoch FROM clock_timestamp()) * 1e6)::bigint)"
            " RETURNING conv, owner, priority, state, node, ord, last_active_us",
            conversation_id, owner, priority, "queued" if node is None else "running", node,
        )  # fmt: skip
        row = _row(record)
        self.rows.append(row)
        return row

    async def run_on(self, conversation_id: str, node: str) -> None:
        await self._connection.execute(
            "UPDATE cluster_runs SET state = 'running', node = $2,"
            " last_active_us = (extract(epoch FROM clock_timestamp()) * 1e6)::bigint"
            " WHERE conv = $1",
            conversation_id, node,
        )  # fmt: skip
        self.rows = [
            dataclasses.replace(row, state="running", node=node)
            if row.conversation_id == conversation_id
            else row
            for row in self.rows
        ]

    async def remove(self, conversation_id: str, node: str | None = None) -> bool:
        status = await self._connection.execute(
            "DELETE FROM cluster_runs WHERE conv = $1 AND ($2::text IS NULL OR node = $2)",
            conversation_id, node,
        )  # fmt: skip
        self.rows = [row for row in self.rows if row.conversation_id != conversation_id]
        return bool(status != "DELETE 0")

    async def expired_nodes(self) -> list[str]:
        records = await self._connection.fetch(
            "SELECT DISTINCT node FROM cluster_runs WHERE node IS NOT NULL AND node NOT IN"
            " (SELECT node FROM cluster_nodes WHERE expires >= clock_timestamp())"
        )
        return [record["node"] for record in records]

    async def remove_node(self, node: str) -> None:
        await self._connection.execute(
            "DELETE FROM cluster_nodes WHERE node = $1 AND expires < clock_timestamp()", node
        )


class PostgresLedger:
    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        read: Read,
        schema: str | None,
    ) -> None:
        self._connect = connect
        self._read = read
        """The store's pooled reads (its errors: `StorageClosed`, `StorageError`)."""
        self._key = lock_key(schema)
        self._connection: asyncpg.Connection | None = None
        self._turn = asyncio.Lock()
        self._closed = False

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[PostgresTransaction]:
        """One at a time per process (they share a connection), one at a time across
        the processes (the advisory lock)."""
        async with self._turn, self._in_transaction() as transaction:
            yield transaction

    @contextlib.asynccontextmanager
    async def _in_transaction(self) -> AsyncIterator[PostgresTransaction]:
        connection = await self._decision_connection()
        try:
            async with connection.transaction():
                await connection.execute("SELECT pg_advisory_xact_lock($1)", self._key)
                rows = [_row(record) for record in await connection.fetch(_ROWS + " ORDER BY ord")]
                yield PostgresTransaction(connection, rows)
        except _FAILURES as exc:
            await self._drop_connection()
            raise self._error(exc) from exc

    async def join(self, node: str, lease_seconds: float) -> None:
        await self._execute(
            "INSERT INTO cluster_nodes (node, expires)"
            " VALUES ($1, clock_timestamp() + make_interval(secs => $2))"
            " ON CONFLICT (node) DO UPDATE SET expires = excluded.expires",
            node, lease_seconds,
        )  # fmt: skip

    async def renew(self, node: str, lease_seconds: float, activity: Mapping[str, int]) -> bool:
        async def work(connection: asyncpg.Connection) -> bool:
            async with connection.transaction():
                status = await connection.execute(
                    "UPDATE cluster_nodes"
                    " SET expires = clock_timestamp() + make_interval(secs => $2)"
                    " WHERE node = $1",
                    node, lease_seconds,
                )  # fmt: skip
                if activity:
                    await connection.execute(
                        "UPDATE cluster_runs AS r SET last_active_us = a.at"
                        " FROM unnest($2::text[], $3::bigint[]) AS a(conv, at)"
                        " WHERE r.conv = a.conv AND r.node = $1",
                        node, list(activity), list(activity.values()),
                    )  # fmt: skip
                return bool(status != "UPDATE 0")

        return await self._read(work)

    async def snapshot(self) -> list[LedgerRow]:
        async def work(connection: asyncpg.Connection) -> list[LedgerRow]:
            return [_row(record) for record in await connection.fetch(_ROWS + " ORDER BY ord")]

        return await self._read(work)

    async def leave(self, node: str) -> None:
        await self._execute("DELETE FROM cluster_nodes WHERE node = $1", node)

    async def close(self) -> None:
        self._closed = True
        await self._drop_connection()

    async def _execute(self, sql: str, *params: object) -> None:
        async def work(connection: asyncpg.Connection) -> None:
            await connection.execute(sql, *params)

        await self._read(work)

    async def _decision_connection(self) -> asyncpg.Connection:
        if self._closed:
            raise StorageClosed()
        if self._connection is None or self._connection.is_closed():
            try:
                self._connection = await self._connect()
            except _FAILURES as exc:
                raise self._error(exc) from exc
        return self._connection

    async def _drop_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(*_FAILURES):
                await connection.close(timeout=2)

    def _error(self, exc: BaseException) -> StorageError:
        if self._closed:
            return StorageClosed()
        return StorageError(f"the cluster ledger failed: {exc}")


def _row(record: asyncpg.Record) -> LedgerRow:
    return LedgerRow(
        conversation_id=record["conv"],
        owner=record["owner"],
        priority=record["priority"],
        state=record["state"],
        node=record["node"],
        order=record["ord"],
        last_active_us=record["last_active_us"],
    )
