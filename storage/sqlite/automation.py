"""SQL for tasks, schedules, webhooks and deliveries: rows to records, and the write
steps the writer runs in its transactions (see `storage.automation`)."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection
from typing import Any

import aiosqlite
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
from storage.errors import (
    ConversationNotFound,
    ScheduleExists,
    ScheduleNotFound,
    TaskNotFound,
    TaskStateConflict,
)
from storage.sqlite.conversations import Insert, Work, decode_cursor

# -- tasks -----------------------------------------------------------------------------


def insert_task(task: NewTask, task_id: str, owner: str | None, now_us: int) -> Insert:
    def step(connection: sqlite3.Connection) -> TaskRecord:
        rows = connection.execute(
            "INSERT INTO tasks (id, owner, kind, status, detail, priority, timeout_seconds, "
            "spec, created_us, updated_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) "
            f"RETURNING {TASK_COLUMNS}",
            (
                task_id, owner, task.kind, task.status, task.detail, task.priority,
                task.timeout_seconds, orjson.dumps(task.spec), now_us, now_us,
            ),
        ).fetchall()  # fmt: skip
        return to_task(rows[0])

    return step


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
        clauses.append("owner = ?")
        params.append(owner)
    for column, values in (("kind", kinds), ("status", statuses)):
        if values is not None:
            values = list(values)
            clauses.append(f"{column} IN ({', '.join('?' * len(values)) or 'NULL'})")
            params.extend(values)
    if cursor is not None:
        created_us, key = decode_cursor(cursor)
        clauses.append("(created_us < ? OR (created_us = ? AND key < ?))")
        params.extend((created_us, created_us, key))
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return (
        f"SELECT {TASK_COLUMNS}, key FROM tasks {where} ORDER BY created_us DESC, key DESC LIMIT ?",
        params,
    )


def update_task(
    task_id: str, patch: TaskPatch, only_from: Collection[str] | None, now_us: int
) -> Work:
    async def work(connection: aiosqlite.Connection) -> TaskRecord:
        rows = list(
            await connection.execute_fetchall("SELECT status FROM tasks WHERE id = ?", (task_id,))
        )
        if not rows:
            raise TaskNotFound(task_id)
        if only_from is not None and rows[0][0] not in only_from:
            raise TaskStateConflict(task_id, rows[0][0])
        changes = patch.changes()
        values = {
            "status": changes.get("status"),
            "detail": changes.get("detail"),
            "outcome": orjson.dumps(changes["outcome"]) if "outcome" in changes else None,
            "started_us": us(changes.get("started_at")),
            "finished_us": us(changes.get("finished_at")),
        }
        names = {"started_at": "started_us", "finished_at": "finished_us"}
        given = {names.get(name, name): values[names.get(name, name)] for name in changes}
        given["updated_us"] = now_us
        assignments = ", ".join(f"{column} = ?" for column in given)
        updated = list(
            await connection.execute_fetchall(
                f"UPDATE tasks SET {assignments} WHERE id = ? RETURNING {TASK_COLUMNS}",
                (*given.values(), task_id),
            )
        )
        return to_task(updated[0])

    return work


# -- schedules -------------------------------------------------------------------------


def insert_schedule(
    schedule: NewSchedule, schedule_id: str, owner: str | None, now_us: int
) -> Insert:
    def step(connection: sqlite3.Connection) -> ScheduleRecord:
        try:
            rows = connection.execute(
                "INSERT INTO schedules (id, flow_id, owner, cron_expression, timezone, "
                "is_enabled, description, flow, overlap, catch_up, budget_cap, "
                "next_execution_us, created_us, updated_us) "
                f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {SCHEDULE_COLUMNS}",
                (
                    schedule_id, schedule.flow_id, owner, schedule.cron_expression,
                    schedule.timezone, schedule.is_enabled, schedule.description,
                    orjson.dumps(schedule.flow), schedule.overlap, schedule.catch_up,
                    schedule.budget_cap, us(schedule.next_execution_at), now_us, now_us,
                ),
            ).fetchall()  # fmt: skip
        except sqlite3.IntegrityError:
            raise ScheduleExists(schedule.flow_id) from None
        return to_schedule(rows[0])

    return step


_SCHEDULE_MOMENTS = {
    "last_execution_at": "last_execution_us",
    "next_execution_at": "next_execution_us",
}


def update_schedule(schedule_id: str, flow_id: str, patch: SchedulePatch, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> ScheduleRecord:
        given: dict[str, Any] = {}
        for name, value in patch.changes().items():
            if name in _SCHEDULE_MOMENTS:
                given[_SCHEDULE_MOMENTS[name]] = us(value)
            elif name == "flow":
                given[name] = orjson.dumps(value)
            else:
                given[name] = value
        given["updated_us"] = now_us
        assignments = ", ".join(f"{column} = ?" for column in given)
        rows = list(
            await connection.execute_fetchall(
                f"UPDATE schedules SET {assignments} WHERE flow_id = ? AND id = ? "
                f"RETURNING {SCHEDULE_COLUMNS}",
                (*given.values(), flow_id, schedule_id),
            )
        )
        if not rows:
            raise ScheduleNotFound(flow_id)
        return to_schedule(rows[0])

    return work


def delete_schedule(schedule_id: str, flow_id: str) -> Work:
    async def work(connection: aiosqlite.Connection) -> None:
        cursor = await connection.execute(
            "DELETE FROM schedules WHERE flow_id = ? AND id = ?", (flow_id, schedule_id)
        )
        if cursor.rowcount == 0:
            raise ScheduleNotFound(flow_id)

    return work


# -- webhooks --------------------------------------------------------------------------


def put_webhook(webhook: NewWebhook, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> WebhookRecord:
        found = list(
            await connection.execute_fetchall(
                "SELECT 1 FROM conversations WHERE id = ?", (webhook.conversation_id,)
            )
        )
        if not found:
            raise ConversationNotFound(webhook.conversation_id)
        await connection.execute(
            "DELETE FROM webhooks WHERE conversation_id = ?", (webhook.conversation_id,)
        )
        rows = await connection.execute_fetchall(
            "INSERT INTO webhooks (conversation_id, owner, origin, url, secret, event_kinds, "
            f"delivered_through, created_us) VALUES (?, ?, ?, ?, ?, ?, ?, ?) "
            f"RETURNING {WEBHOOK_COLUMNS}",
            (
                webhook.conversation_id, webhook.owner, webhook.origin, webhook.url,
                webhook.secret, orjson.dumps(webhook.event_kinds), webhook.delivered_through,
                now_us,
            ),
        )  # fmt: skip
        return to_webhook(next(iter(rows)))

    return work


def delete_webhook(conversation_id: str) -> Work:
    async def work(connection: aiosqlite.Connection) -> bool:
        cursor = await connection.execute(
            "DELETE FROM webhooks WHERE conversation_id = ?", (conversation_id,)
        )
        return cursor.rowcount > 0

    return work


def record_delivery(delivery: NewDelivery, delivered_through: int | None, now_us: int) -> Work:
    async def work(connection: aiosqlite.Connection) -> DeliveryRecord:
        rows = await connection.execute_fetchall(
            "INSERT INTO webhook_deliveries (webhook_id, owner, origin, conversation_id, "
            "event_id, event_kind, attempt, outcome, http_status, error, duration_ms, at_us) "
            f"VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING {DELIVERY_COLUMNS}",
            (
                delivery.webhook_id, delivery.owner, delivery.origin, delivery.conversation_id,
                delivery.event_id, delivery.event_kind, delivery.attempt, delivery.outcome,
                delivery.http_status, delivery.error, delivery.duration_ms, now_us,
            ),
        )  # fmt: skip
        if delivered_through is not None:
            await connection.execute(
                "UPDATE webhooks SET delivered_through = max(delivered_through, ?) WHERE id = ?",
                (delivered_through, delivery.webhook_id),
            )
        return to_delivery(next(iter(rows)))

    return work


def delivery_list_query(
    origin: str | None, conversation_id: str | None, before: int | None, limit: int
) -> tuple[str, list[Any]]:
    clauses: list[str] = []
    params: list[Any] = []
    for column, value in (("origin", origin), ("conversation_id", conversation_id)):
        if value is not None:
            clauses.append(f"{column} = ?")
            params.append(value)
    if before is not None:
        clauses.append("id < ?")
        params.append(before)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    params.append(limit)
    return f"SELECT {DELIVERY_COLUMNS} FROM webhook_deliveries {where} ORDER BY id DESC LIMIT ?", (
        params
    )
