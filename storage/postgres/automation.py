"""Tasks, schedules, webhooks and deliveries on PostgreSQL: the write steps the writer
runs in its transactions, and the list queries (rows to records: `storage.automation_rows`,
shared with SQLite)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Collection
from typing import Any, TypeVar

import asyncpg
import orjson

from storage.automation import (
    DeliveryRecord,
    NewDelivery,
    NewSchedule,
    NewTask,
    NewWebhook,
    SchedulePatch,
    ScheduleRecord,
    TaskPatch,
    TaskRecord,
    WebhookRecord,
)
from storage.automation_rows import (
    DELIVERY_COLUMNS,
    SCHEDULE_COLUMNS,
    TASK_COLUMNS,
    WEBHOOK_COLUMNS,
    to_delivery,
    to_schedule,
    to_task,
    to_webhook,
    us,
)
from storage.common import decode_cursor
from storage.errors import (
    ConversationNotFound,
    ScheduleExists,
    ScheduleNotFound,
    TaskNotFound,
    TaskStateConflict,
)

T = TypeVar("T")
Work = Callable[[asyncpg.Connection], Awaitable[T]]

MIGRATION = """
CREATE TABLE tasks (
    key BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    owner TEXT,
    kind TEXT NOT NULL,
    status TEXT NOT NULL,
    detail TEXT NOT NULL DEFAULT '',
    priority INTEGER NOT NULL,
    timeout_seconds DOUBLE PRECISION,
    spec BYTEA NOT NULL,
    outcome BYTEA NOT NULL DEFAULT '\\x7b7d',
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL,
    started_us BIGINT,
    finished_us BIGINT
);
CREATE INDEX tasks_newest ON tasks (created_us DESC, key DESC);
CREATE INDEX tasks_owner_newest ON tasks (owner, created_us DESC, key DESC);
CREATE INDEX tasks_by_status ON tasks (status);

CREATE TABLE schedules (
    key BIGSERIAL PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    flow_id TEXT NOT NULL UNIQUE,
    owner TEXT,
    cron_expression TEXT NOT NULL,
    timezone TEXT NOT NULL,
    is_enabled BOOLEAN NOT NULL,
    description TEXT NOT NULL DEFAULT '',
    flow BYTEA NOT NULL,
    overlap TEXT NOT NULL,
    catch_up TEXT NOT NULL,
    budget_cap DOUBLE PRECISION,
    spent DOUBLE PRECISION NOT NULL DEFAULT 0,
    last_execution_us BIGINT,
    next_execution_us BIGINT,
    execution_count BIGINT NOT NULL DEFAULT 0,
    last_conversation_id TEXT,
    pending BOOLEAN NOT NULL DEFAULT false,
    created_us BIGINT NOT NULL,
    updated_us BIGINT NOT NULL
);
CREATE INDEX schedules_owner ON schedules (owner, key);

CREATE TABLE webhooks (
    id BIGSERIAL PRIMARY KEY,
    conversation_id TEXT NOT NULL UNIQUE,
    owner TEXT,
    origin TEXT NOT NULL,
    url TEXT NOT NULL,
    secret TEXT NOT NULL,
    event_kinds BYTEA NOT NULL,
    delivered_through BIGINT NOT NULL DEFAULT -1,
    created_us BIGINT NOT NULL
);

CREATE TABLE webhook_deliveries (
    id BIGSERIAL PRIMARY KEY,
    webhook_id BIGINT NOT NULL,
    owner TEXT,
    origin TEXT NOT NULL,
    conversation_id TEXT NOT NULL,
    event_id BIGINT NOT NULL,
    event_kind TEXT NOT NULL,
    attempt INTEGER NOT NULL,
    outcome TEXT NOT NULL,
    http_status INTEGER,
    error TEXT,
    duration_ms BIGINT NOT NULL,
    at_us BIGINT NOT NULL
);
CREATE INDEX deliveries_by_origin ON webhook_deliveries (origin, id);
CREATE INDEX deliveries_by_conversation ON webhook_deliveries (conversation_id, id);
"""
"""Migration 2. What belongs to a conversation (its task, schedule, webhook and
deliveries) is deleted with it by the conversation's delete (`BELONGING`)."""

BELONGING = (
    ("tasks", "id"),
    ("schedules", "id"),
    ("webhooks", "conversation_id"),
    ("webhook_deliveries", "conversation_id"),
)


def _numbered(clauses: list[str], params: list[Any], template: str, value: Any) -> None:
    """Append ``template`` with its ``{}`` replaced by the next parameter's number."""
    params.append(value)
    clauses.append(template.format(f"${len(params)}"))


# -- tasks -----------------------------------------------------------------------------


def insert_task(task: NewTask, task_id: str, owner: str | None, now_us: int) -> Work[TaskRecord]:
    async def work(connection: asyncpg.Connection) -> TaskRecord:
        row = await connection.fetchrow(
            "INSERT INTO tasks (id, owner, kind, status, detail, priority, timeout_seconds, "
            "spec, created_us, updated_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $9) "
            f"RETURNING {TASK_COLUMNS}",
            task_id, owner, task.kind, task.status, task.detail, task.priority,
            task.timeout_seconds, orjson.dumps(task.spec), now_us,
        )  # fmt: skip
        return to_task(row)

    return work


def task_list_query(
    owner: str | None,
    kinds: Collection[str] | None,
    statuses: Collection[str] | None,
    cursor: str | None,
    limit: int,
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if owner is not None:
        _numbered(clauses, params, "owner = {}", owner)
    if kinds is not None:
        _numbered(clauses, params, "kind = ANY({}::text[])", list(kinds))
    if statuses is not None:
        _numbered(clauses, params, "status = ANY({}::text[])", list(statuses))
    if cursor is not None:
        created_us, key = decode_cursor(cursor)
        params.extend((created_us, key))
        created, row = f"${len(params) - 1}", f"${len(params)}"
        clauses.append(f"(created_us < {created} OR (created_us = {created} AND key < {row}))")
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return (
        f"SELECT {TASK_COLUMNS}, key FROM tasks {where} "
        f"ORDER BY created_us DESC, key DESC LIMIT ${len(params)}",
        params,
    )


def update_task(
    task_id: str, patch: TaskPatch, only_from: Collection[str] | None, now_us: int
) -> Work[TaskRecord]:
    async def work(connection: asyncpg.Connection) -> TaskRecord:
        status = await connection.fetchval(
            "SELECT status FROM tasks WHERE id = $1 FOR UPDATE", task_id
        )
        if status is None:
            raise TaskNotFound(task_id)
        if only_from is not None and status not in only_from:
            raise TaskStateConflict(task_id, status)
        changes = patch.changes()
        given: dict[str, Any] = {}
        for name, value in changes.items():
            if name == "outcome":
                given["outcome"] = orjson.dumps(value)
            elif name in ("started_at", "finished_at"):
                given[name.replace("_at", "_us")] = us(value)
            else:
                given[name] = value
        given["updated_us"] = now_us
        assignments = ", ".join(
            f"{column} = ${number}" for number, column in enumerate(given, start=2)
        )
        row = await connection.fetchrow(
            f"UPDATE tasks SET {assignments} WHERE id = $1 RETURNING {TASK_COLUMNS}",
            task_id,
            *given.values(),
        )
        return to_task(row)

    return work


# -- schedules -------------------------------------------------------------------------

_SCHEDULE_MOMENTS = {
    "last_execution_at": "last_execution_us",
    "next_execution_at": "next_execution_us",
}


def insert_schedule(
    schedule: NewSchedule, schedule_id: str, owner: str | None, now_us: int
) -> Work[ScheduleRecord]:
    async def work(connection: asyncpg.Connection) -> ScheduleRecord:
        try:
            row = await connection.fetchrow(
                "INSERT INTO schedules (id, flow_id, owner, cron_expression, timezone, "
                "is_enabled, description, flow, overlap, catch_up, budget_cap, "
                "next_execution_us, created_us, updated_us) VALUES ($1, $2, $3, $4, $5, $6, "
                f"$7, $8, $9, $10, $11, $12, $13, $13) RETURNING {SCHEDULE_COLUMNS}",
                schedule_id, schedule.flow_id, owner, schedule.cron_expression,
                schedule.timezone, schedule.is_enabled, schedule.description,
                orjson.dumps(schedule.flow), schedule.overlap, schedule.catch_up,
                schedule.budget_cap, us(schedule.next_execution_at), now_us,
            )  # fmt: skip
        except asyncpg.UniqueViolationError:
            raise ScheduleExists(schedule.flow_id) from None
        return to_schedule(row)

    return work


def update_schedule(
    schedule_id: str, flow_id: str, patch: SchedulePatch, now_us: int
) -> Work[ScheduleRecord]:
    async def work(connection: asyncpg.Connection) -> ScheduleRecord:
        given: dict[str, Any] = {}
        for name, value in patch.changes().items():
            if name in _SCHEDULE_MOMENTS:
                given[_SCHEDULE_MOMENTS[name]] = us(value)
            elif name == "flow":
                given[name] = orjson.dumps(value)
            else:
                given[name] = value
        given["updated_us"] = now_us
        assignments = ", ".join(
            f"{column} = ${number}" for number, column in enumerate(given, start=3)
        )
        row = await connection.fetchrow(
            f"UPDATE schedules SET {assignments} WHERE flow_id = $1 AND id = $2 "
            f"RETURNING {SCHEDULE_COLUMNS}",
            flow_id,
            schedule_id,
            *given.values(),
        )
        if row is None:
            raise ScheduleNotFound(flow_id)
        return to_schedule(row)

    return work


def delete_schedule(schedule_id: str, flow_id: str) -> Work[None]:
    async def work(connection: asyncpg.Connection) -> None:
        status = await connection.execute(
            "DELETE FROM schedules WHERE flow_id = $1 AND id = $2", flow_id, schedule_id
        )
        if status.endswith(" 0"):
            raise ScheduleNotFound(flow_id)

    return work


# -- webhooks --------------------------------------------------------------------------


def put_webhook(webhook: NewWebhook, now_us: int) -> Work[WebhookRecord]:
    async def work(connection: asyncpg.Connection) -> WebhookRecord:
        if not await connection.fetchval(
            "SELECT 1 FROM conversations WHERE id = $1", webhook.conversation_id
        ):
            raise ConversationNotFound(webhook.conversation_id)
        await connection.execute(
            "DELETE FROM webhooks WHERE conversation_id = $1", webhook.conversation_id
        )
        row = await connection.fetchrow(
            "INSERT INTO webhooks (conversation_id, owner, origin, url, secret, event_kinds, "
            "delivered_through, created_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) "
            f"RETURNING {WEBHOOK_COLUMNS}",
            webhook.conversation_id, webhook.owner, webhook.origin, webhook.url,
            webhook.secret, orjson.dumps(webhook.event_kinds), webhook.delivered_through,
            now_us,
        )  # fmt: skip
        return to_webhook(row)

    return work


def delete_webhook(conversation_id: str) -> Work[bool]:
    async def work(connection: asyncpg.Connection) -> bool:
        status = await connection.execute(
            "DELETE FROM webhooks WHERE conversation_id = $1", conversation_id
        )
        return not status.endswith(" 0")

    return work


def record_delivery(
    delivery: NewDelivery, delivered_through: int | None, now_us: int
) -> Work[DeliveryRecord]:
    async def work(connection: asyncpg.Connection) -> DeliveryRecord:
        row = await connection.fetchrow(
            "INSERT INTO webhook_deliveries (webhook_id, owner, origin, conversation_id, "
            "event_id, event_kind, attempt, outcome, http_status, error, duration_ms, at_us) "
            "VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12) "
            f"RETURNING {DELIVERY_COLUMNS}",
            delivery.webhook_id, delivery.owner, delivery.origin, delivery.conversation_id,
            delivery.event_id, delivery.event_kind, delivery.attempt, delivery.outcome,
            delivery.http_status, delivery.error, delivery.duration_ms, now_us,
        )  # fmt: skip
        if delivered_through is not None:
            await connection.execute(
                "UPDATE webhooks SET delivered_through = greatest(delivered_through, $1) "
                "WHERE id = $2",
                delivered_through,
                delivery.webhook_id,
            )
        return to_delivery(row)

    return work


def delivery_list_query(
    origin: str | None, conversation_id: str | None, before: int | None, limit: int
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    if origin is not None:
        _numbered(clauses, params, "origin = {}", origin)
    if conversation_id is not None:
        _numbered(clauses, params, "conversation_id = {}", conversation_id)
    if before is not None:
        _numbered(clauses, params, "id < {}", before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return (
        f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {where} "
        f"ORDER BY id DESC LIMIT ${len(params)}",
        params,
    )
