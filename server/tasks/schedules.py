"""`Schedules`: the schedule API's operations (reference 002's ``/schedule``).

A schedule belongs to the user who created it; its ``flow_id`` is theirs (alice's and
bob's ``nightly`` are two schedules) and another user's answers 404. Each schedule logs
its changes in a conversation of its own (its ``id``), so the page, the streams and the
history show them; its runs are ordinary conversations (trigger ``schedule``).
"""

from __future__ import annotations

import secrets
from typing import Any

from server.auth import User, public_id, scoped_id
from server.errors import BadRequest, Conflict, NotFound
from server.service import ConversationService
from server.settings import Settings
from server.tasks import cron
from server.tasks.schedule_models import CreateSchedule, ScheduleChanges
from server.tasks.scheduler import Scheduler, schedule_event
from server.tasks.webhooks import Webhooks
from storage import (
    NewConversation,
    NewSchedule,
    ScheduleExists,
    ScheduleNotFound,
    SchedulePatch,
    ScheduleRecord,
)


class Schedules:
    def __init__(
        self,
        service: ConversationService,
        scheduler: Scheduler,
        webhooks: Webhooks,
        settings: Settings,
    ) -> None:
        self.service = service
        self.storage = service.storage
        self.scheduler = scheduler
        self.webhooks = webhooks
        self.settings = settings

    async def get(self, user: User, flow_id: str) -> ScheduleRecord:
        try:
            schedule = await self.storage.get_schedule(scoped_id(user, flow_id))
        except ScheduleNotFound:
            schedule = None
        if schedule is None or (user.name is not None and schedule.owner != user.name):
            raise NotFound(f"schedule {flow_id!r} not found")
        return schedule

    async def list(self, user: User) -> list[ScheduleRecord]:
        found: list[ScheduleRecord] = []
        cursor = None
        while True:
            page = await self.storage.list_schedules(owner=user.name, cursor=cursor)
            found.extend(page.schedules)
            if (cursor := page.next_cursor) is None:
                return found

    async def create(self, user: User, body: CreateSchedule) -> ScheduleRecord:
        self.service.runs.refuse_when_closing()
        timezone = body.timezone or "UTC"
        self._check_cron(body.cron_expression, timezone)
        enabled = True if body.is_enabled is None else body.is_enabled
        now = self.scheduler.clock.now()
        flow = self._flow(body.flow.model_dump(exclude_none=True), body)
        new = NewSchedule(
            flow_id=scoped_id(user, body.flow_id),
            cron_expression=body.cron_expression,
            timezone=timezone,
            is_enabled=enabled,
            description=body.description or "",
            flow=flow,
            overlap=body.overlap_policy or "skip",
            catch_up=body.catch_up or "once",
            budget_cap=body.budget_cap,
            next_execution_at=(
                cron.next_after(body.cron_expression, timezone, now) if enabled else None
            ),
        )
        log = NewConversation(
            id=scoped_id(user, f"schedule-{secrets.token_hex(16)}"),
            owner=user.name,
            title=f"Schedule {body.flow_id}",
            trigger="schedule",
        )
        provisional = ScheduleRecord.model_validate(
            {**new.model_dump(), "id": log.id, "owner": user.name, "spent": 0.0,
             "last_execution_at": None, "execution_count": 0, "last_conversation_id": None,
             "pending": False, "created_at": now, "updated_at": now}
        )  # fmt: skip
        try:
            schedule, _ = await self.storage.create_schedule(
                new, log, [schedule_event(provisional, "created", body.description or "")]
            )
        except ScheduleExists:
            raise Conflict(f"a schedule for flow {body.flow_id!r} already exists") from None
        if body.webhook is not None:
            await self.webhooks.attach(
                schedule.id, user.name, f"schedule:{schedule.flow_id}", body.webhook
            )
        self.scheduler.changed(schedule, schedule.flow_id)
        return schedule

    async def update(self, user: User, flow_id: str, body: ScheduleChanges) -> ScheduleRecord:
        schedule = await self.get(user, flow_id)
        changes: dict[str, Any] = {}
        given = body.model_fields_set
        for name in ("cron_expression", "is_enabled", "description", "timezone", "budget_cap"):
            if name in given and getattr(body, name) is not None:
                changes[name] = getattr(body, name)
        if body.overlap_policy is not None:
            changes["overlap"] = body.overlap_policy
        if body.catch_up is not None:
            changes["catch_up"] = body.catch_up
        flow = dict(schedule.flow)
        if body.flow is not None:
            flow = {"webhook": flow.get("webhook")} | body.flow.model_dump(exclude_none=True)
        changes["flow"] = self._flow(flow, body)
        expression = changes.get("cron_expression", schedule.cron_expression)
        timezone = changes.get("timezone", schedule.timezone)
        self._check_cron(expression, timezone)
        enabled = changes.get("is_enabled", schedule.is_enabled)
        timing = {"cron_expression", "timezone", "is_enabled"} & changes.keys()
        if timing or (enabled and schedule.next_execution_at is None):
            now = self.scheduler.clock.now()
            changes["next_execution_at"] = (
                cron.next_after(expression, timezone, now) if enabled else None
            )
        patch = SchedulePatch(**changes)
        after = schedule.model_copy(update=patch.changes())
        described = ", ".join(sorted(given)) or "nothing"
        record, _ = await self.storage.update_schedule(
            schedule.flow_id, patch, schedule_event(after, "updated", f"changed: {described}")
        )
        if body.webhook is not None:
            await self.webhooks.attach(
                record.id, user.name, f"schedule:{record.flow_id}", body.webhook
            )
        self.scheduler.changed(record, record.flow_id)
        return record

    async def delete(self, user: User, flow_id: str) -> None:
        schedule = await self.get(user, flow_id)
        try:
            await self.storage.delete_schedule(
                schedule.flow_id, schedule_event(schedule, "deleted", "the schedule was deleted")
            )
        except ScheduleNotFound:
            raise NotFound(f"schedule {flow_id!r} not found") from None
        self.scheduler.changed(None, schedule.flow_id)

    def _check_cron(self, expression: str, timezone: str) -> None:
        try:
            cron.check_expression(expression, timezone, self.settings.schedule_min_interval)
        except ValueError as exc:
            raise BadRequest(f"cron_expression: {exc}", field="cron_expression") from None

    def _flow(self, flow: dict[str, Any], body: ScheduleChanges) -> dict[str, Any]:
        """The flow as stored: its webhook (if any) is copied onto each run."""
        if body.webhook is not None:
            flow["webhook"] = body.webhook.model_dump()
        if flow.get("webhook") is None:
            flow.pop("webhook", None)
        return flow


def schedule_response(schedule: ScheduleRecord, last_run: dict[str, Any] | None) -> dict[str, Any]:
    """A schedule as reference 002's ScheduleResponse, plus threadline's fields. The
    webhook's secret is never shown."""
    flow = dict(schedule.flow)
    if (hook := flow.get("webhook")) is not None:
        flow["webhook"] = {"url": hook["url"], "events": hook.get("events", [])}
    return {
        "id": public_id(schedule.id),
        "flow_id": public_id(schedule.flow_id),
        "cron_expression": schedule.cron_expression,
        "is_enabled": schedule.is_enabled,
        "description": schedule.description,
        "last_execution_at": cron.iso(schedule.last_execution_at),
        "next_execution_at": cron.iso(schedule.next_execution_at),
        "execution_count": schedule.execution_count,
        "created_at": cron.iso(schedule.created_at),
        "updated_at": cron.iso(schedule.updated_at),
        "timezone": schedule.timezone,
        "overlap_policy": schedule.overlap,
        "catch_up": schedule.catch_up,
        "budget_cap": schedule.budget_cap,
        "spent": schedule.spent,
        "pending": schedule.pending,
        "flow": flow,
        "log_conversation_id": public_id(schedule.id),
        "last_run": last_run,
    }
