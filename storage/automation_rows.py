"""Rows of the tasks, schedules, webhooks and deliveries tables as records: the columns
and their order, shared by every backend."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import orjson

from storage.automation import DeliveryRecord, ScheduleRecord, TaskRecord, WebhookRecord
from storage.records import from_micros, micros

TASK_COLUMNS = (
    "id, owner, kind, status, detail, priority, timeout_seconds, spec, outcome, "
    "created_us, updated_us, started_us, finished_us"
)


def moment(value: int | None) -> datetime | None:
    return None if value is None else from_micros(value)


def us(value: datetime | None) -> int | None:
    return None if value is None else micros(value)


def to_task(row: Any) -> TaskRecord:
    (
        task_id, owner, kind, status, detail, priority, timeout, spec, outcome,
        created_us, updated_us, started_us, finished_us,
    ) = row  # fmt: skip
    return TaskRecord(
        id=task_id,
        owner=owner,
        kind=kind,
        status=status,
        detail=detail,
        priority=priority,
        timeout_seconds=timeout,
        spec=orjson.loads(spec),
        outcome=orjson.loads(outcome),
        created_at=from_micros(created_us),
        updated_at=from_micros(updated_us),
        started_at=moment(started_us),
        finished_at=moment(finished_us),
    )


SCHEDULE_COLUMNS = (
    "id, flow_id, owner, cron_expression, timezone, is_enabled, description, flow, overlap, "
    "catch_up, budget_cap, spent, last_execution_us, next_execution_us, execution_count, "
    "last_conversation_id, pending, created_us, updated_us"
)


def to_schedule(row: Any) -> ScheduleRecord:
    (
        schedule_id, flow_id, owner, cron, timezone, enabled, description, flow, overlap,
        catch_up, budget_cap, spent, last_us, next_us, count, last_conversation, pending,
        created_us, updated_us,
    ) = row  # fmt: skip
    return ScheduleRecord(
        id=schedule_id,
        flow_id=flow_id,
        owner=owner,
        cron_expression=cron,
        timezone=timezone,
        is_enabled=bool(enabled),
        description=description,
        flow=orjson.loads(flow),
        overlap=overlap,
        catch_up=catch_up,
        budget_cap=budget_cap,
        spent=spent,
        last_execution_at=moment(last_us),
        next_execution_at=moment(next_us),
        execution_count=count,
        last_conversation_id=last_conversation,
        pending=bool(pending),
        created_at=from_micros(created_us),
        updated_at=from_micros(updated_us),
    )


WEBHOOK_COLUMNS = (
    "id, conversation_id, owner, origin, url, secret, event_kinds, delivered_through, created_us"
)
DELIVERY_COLUMNS = (
    "id, webhook_id, owner, origin, conversation_id, event_id, event_kind, attempt, outcome, "
    "http_status, error, duration_ms, at_us"
)


def to_webhook(row: Any) -> WebhookRecord:
    hook_id, conversation_id, owner, origin, url, secret, kinds, through, created_us = row
    return WebhookRecord(
        id=hook_id,
        conversation_id=conversation_id,
        owner=owner,
        origin=origin,
        url=url,
        secret=secret,
        event_kinds=orjson.loads(kinds),
        delivered_through=through,
        created_at=from_micros(created_us),
    )


def to_delivery(row: Any) -> DeliveryRecord:
    names = DELIVERY_COLUMNS.replace("at_us", "at").split(", ")
    values = dict(zip(names, row, strict=True))
    values["at"] = from_micros(values["at"])
    return DeliveryRecord.model_validate(values)
