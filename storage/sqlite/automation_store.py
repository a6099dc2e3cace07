"""`SqliteStorage`'s tasks, schedules and webhooks (the `TaskStore`, `ScheduleStore` and
`WebhookStore` protocols). Every write goes through the one writer; a task's or a
schedule's state change is its record and its log event in one transaction."""

from __future__ import annotations

import sqlite3
from collections.abc import Collection, Iterable, Sequence
from typing import Any

from events import EventBase
from storage.automation import (
    DeliveryPage,
    DeliveryRecord,
    NewDelivery,
    NewSchedule,
    NewTask,
    NewWebhook,
    SchedulePage,
    SchedulePatch,
    ScheduleRecord,
    TaskPage,
    TaskPatch,
    TaskRecord,
    WebhookRecord,
)
from storage.common import encode_cursor
from storage.errors import ScheduleNotFound, TaskNotFound
from storage.models import ConversationRecord, NewConversation, StoredEvent
from storage.protocols import MAX_PAGE
from storage.records import now_micros, prepare
from storage.sqlite import automation, conversations
from storage.sqlite.writer import LogWriter, Work


class AutomationStore:
    _writer: LogWriter

    async def _read(self, sql: str, params: Iterable[Any]) -> list[Any]:
        raise NotImplementedError

    # -- tasks -----------------------------------------------------------------------

    async def create_task(
        self, task: NewTask, conversation: NewConversation, events: Sequence[EventBase]
    ) -> tuple[TaskRecord, ConversationRecord, list[StoredEvent]]:
        now = now_micros()
        insert_conversation = conversations.insert(conversation, now)
        insert_task = automation.insert_task(task, conversation.id, conversation.owner, now)

        def insert(connection: sqlite3.Connection) -> tuple[ConversationRecord, TaskRecord]:
            return insert_conversation(connection), insert_task(connection)

        prepared = [prepare(event) for event in events]
        (record, task_record), stored = await self._writer.create_with_events(
            conversation.id, insert, prepared
        )
        return task_record, record, stored

    async def get_task(self, task_id: str) -> TaskRecord:
        rows = await self._read(
            f"SELECT {automation.TASK_COLUMNS} FROM tasks WHERE id = ?", [task_id]
        )
        if not rows:
            raise TaskNotFound(task_id)
        return automation.to_task(rows[0])

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        kinds: Collection[str] | None = None,
        statuses: Collection[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> TaskPage:
        _check_limit(limit)
        sql, params = automation.task_list_query(owner, kinds, statuses, cursor, limit + 1)
        rows = await self._read(sql, params)
        tasks = [automation.to_task(row[:-1]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            last = rows[limit - 1]
            next_cursor = encode_cursor(last[9], last[-1])
        return TaskPage(tasks, next_cursor)

    async def update_task(
        self,
        task_id: str,
        patch: TaskPatch,
        event: EventBase,
        *,
        only_from: Collection[str] | None = None,
    ) -> tuple[TaskRecord, StoredEvent]:
        work = automation.update_task(task_id, patch, only_from, now_micros())
        try:
            record, (stored,) = await self._writer.append_with(task_id, [prepare(event)], work)
        except LookupError as exc:  # the conversation (and so its task) is gone
            raise TaskNotFound(task_id) from exc
        return record, stored

    # -- schedules -------------------------------------------------------------------

    async def create_schedule(
        self, schedule: NewSchedule, log: NewConversation, events: Sequence[EventBase]
    ) -> tuple[ScheduleRecord, list[StoredEvent]]:
        now = now_micros()
        insert_log = conversations.insert(log, now)
        insert_schedule = automation.insert_schedule(schedule, log.id, log.owner, now)

        def insert(connection: sqlite3.Connection) -> ScheduleRecord:
            # The schedule first: a taken flow id is the error the caller should see.
            record = insert_schedule(connection)
            insert_log(connection)
            return record

        prepared = [prepare(event) for event in events]
        return await self._writer.create_with_events(log.id, insert, prepared)

    async def get_schedule(self, flow_id: str) -> ScheduleRecord:
        rows = await self._read(
            f"SELECT {automation.SCHEDULE_COLUMNS} FROM schedules WHERE flow_id = ?", [flow_id]
        )
        if not rows:
            raise ScheduleNotFound(flow_id)
        return automation.to_schedule(rows[0])

    async def list_schedules(
        self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> SchedulePage:
        _check_limit(limit)
        clauses: list[str] = []
        params: list[Any] = []
        if owner is not None:
            clauses.append("owner = ?")
            params.append(owner)
        if cursor is not None:
            clauses.append("key > ?")
            params.append(conversations.decode_cursor(cursor)[1])
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        rows = await self._read(
            f"SELECT {automation.SCHEDULE_COLUMNS}, key FROM schedules {where} "
            "ORDER BY key LIMIT ?",
            [*params, limit + 1],
        )
        schedules = [automation.to_schedule(row[:-1]) for row in rows[:limit]]
        next_cursor = None
        if len(rows) > limit:
            next_cursor = encode_cursor(0, rows[limit - 1][-1])
        return SchedulePage(schedules, next_cursor)

    async def update_schedule(
        self, flow_id: str, patch: SchedulePatch, event: EventBase
    ) -> tuple[ScheduleRecord, StoredEvent]:
        log_id = (await self.get_schedule(flow_id)).id
        work = automation.update_schedule(log_id, flow_id, patch, now_micros())
        record, (stored,) = await self._schedule_write(flow_id, log_id, event, work)
        return record, stored

    async def delete_schedule(self, flow_id: str, event: EventBase) -> StoredEvent:
        log_id = (await self.get_schedule(flow_id)).id
        work = automation.delete_schedule(log_id, flow_id)
        _, (stored,) = await self._schedule_write(flow_id, log_id, event, work)
        return stored

    async def _schedule_write(
        self, flow_id: str, log_id: str, event: EventBase, work: Work[Any]
    ) -> tuple[Any, list[StoredEvent]]:
        try:
            return await self._writer.append_with(log_id, [prepare(event)], work)
        except LookupError as exc:  # its log is gone, and the schedule with it
            raise ScheduleNotFound(flow_id) from exc

    # -- webhooks --------------------------------------------------------------------

    async def put_webhook(self, webhook: NewWebhook) -> WebhookRecord:
        return await self._writer.call(automation.put_webhook(webhook, now_micros()))

    async def get_webhook(self, conversation_id: str) -> WebhookRecord | None:
        rows = await self._read(
            f"SELECT {automation.WEBHOOK_COLUMNS} FROM webhooks WHERE conversation_id = ?",
            [conversation_id],
        )
        return automation.to_webhook(rows[0]) if rows else None

    async def list_webhooks(self, *, after_id: int = 0, limit: int = 100) -> list[WebhookRecord]:
        _check_limit(limit)
        rows = await self._read(
            f"SELECT {automation.WEBHOOK_COLUMNS} FROM webhooks WHERE id > ? ORDER BY id LIMIT ?",
            [after_id, limit],
        )
        return [automation.to_webhook(row) for row in rows]

    async def delete_webhook(self, conversation_id: str) -> bool:
        return bool(await self._writer.call(automation.delete_webhook(conversation_id)))

    async def record_delivery(
        self, delivery: NewDelivery, *, delivered_through: int | None = None
    ) -> DeliveryRecord:
        return await self._writer.call(
            automation.record_delivery(delivery, delivered_through, now_micros())
        )

    async def list_deliveries(
        self,
        *,
        origin: str | None = None,
        conversation_id: str | None = None,
        limit: int = 20,
        before: int | None = None,
    ) -> DeliveryPage:
        _check_limit(limit)
        sql, params = automation.delivery_list_query(origin, conversation_id, before, limit + 1)
        rows = await self._read(sql, params)
        deliveries = [automation.to_delivery(row) for row in rows[:limit]]
        next_cursor = deliveries[-1].id if len(rows) > limit else None
        return DeliveryPage(deliveries, next_cursor)


def _check_limit(limit: int) -> None:
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")
