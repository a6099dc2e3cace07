"""`Scheduler`: starts a schedule's runs when they are due, through the session manager.

It keeps the enabled schedules in memory, sleeps (on its `Clock`) until the earliest is
due or a schedule changes, and fires what is due: each firing is one conversation from
the schedule's flow, created and admitted like any other (queued by its priority at a
cap), and one write of the schedule with a ``schedule`` event in its log.

- **Overlap**: while the previous run is active (running or queued), a firing is
  skipped (``skip``) or owed (``queue``: it starts when that run ends; one at most).
- **Budget cap**: runs spend from the schedule's ``budget_cap``; each run may spend what
  is left (its ``max_budget_per_task`` is capped by it), and once nothing is left the
  schedule is disabled, saying so.
- **Restart**: schedules are in the store. Firings that fell due while the server was
  down are counted; ``catch_up: once`` starts one run for all of them at startup,
  ``skip`` starts none; then the next due firing after now is awaited.
- **Exactly one run per firing**: a run's conversation id names its firing, so a firing
  retried after a crash finds the run it already created instead of starting another.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import datetime, timedelta
from typing import Any

from events import MessageAction, ScheduleObservation
from events.actions import MessageArgs
from events.automation import ScheduleExtras
from server.auth import User, public_id
from server.errors import as_api_error
from server.run_listeners import RunOutcome
from server.service import ConversationService
from server.tasks import cron
from server.tasks.ledger import conversation_request
from server.tasks.models import WebhookSpec
from server.tasks.webhooks import Webhooks
from storage import (
    ConversationExists,
    ConversationNotFound,
    ScheduleNotFound,
    SchedulePatch,
    ScheduleRecord,
    StorageError,
)

logger = logging.getLogger(__name__)
RETRY_SECONDS = 30.0
"""A firing that could not be recorded (a full disk) is tried again this much later."""


def schedule_event(
    schedule: ScheduleRecord, change: str, reason: str = "", **extras: Any
) -> ScheduleObservation:
    values: dict[str, Any] = {
        "flow_id": public_id(schedule.flow_id),
        "change": change,
        "reason": reason,
        "is_enabled": schedule.is_enabled,
        "next_execution_at": cron.iso(schedule.next_execution_at),
        **extras,
    }
    return ScheduleObservation(source="environment", extras=ScheduleExtras.model_validate(values))


class Scheduler:
    def __init__(self, service: ConversationService, webhooks: Webhooks, clock: cron.Clock) -> None:
        self.service = service
        self.storage = service.storage
        self.webhooks = webhooks
        self.clock = clock
        self.schedules: dict[str, ScheduleRecord] = {}
        self.started_at = clock.now()
        self._wake = asyncio.Event()
        self._loop: asyncio.Task[None] | None = None
        self._firing = asyncio.Lock()

    # -- lifecycle -------------------------------------------------------------------

    async def load(self) -> None:
        """Read every schedule; firings due before now were missed while down."""
        self.started_at = self.clock.now()
        cursor = None
        while True:
            page = await self.storage.list_schedules(limit=100, cursor=cursor)
            for schedule in page.schedules:
                self.schedules[schedule.flow_id] = schedule
            if (cursor := page.next_cursor) is None:
                return

    def start(self) -> None:
        self._loop = asyncio.create_task(self._run(), name="threadline-scheduler")

    async def close(self) -> None:
        if self._loop is not None:
            self._loop.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._loop

    def changed(self, schedule: ScheduleRecord | None, flow_id: str) -> None:
        """A schedule was written (None: deleted): look at the times again."""
        if schedule is None:
            self.schedules.pop(flow_id, None)
        else:
            self.schedules[flow_id] = schedule
        self._wake.set()

    # -- firing ----------------------------------------------------------------------

    async def tick(self) -> None:
        """Fire every enabled schedule that is due now."""
        async with self._firing:
            now = self.clock.now()
            for schedule in sorted(self._due(now), key=lambda s: s.next_execution_at):  # type: ignore[arg-type, return-value]
                try:
                    await self._fire(schedule, now)
                except (ScheduleNotFound, ConversationNotFound):
                    self.schedules.pop(schedule.flow_id, None)
                except Exception as exc:  # a full disk, say: tried again a little later
                    if isinstance(exc, StorageError):
                        logger.warning("could not fire %s: %s", schedule.flow_id, exc)
                    else:
                        logger.exception("could not fire %s", schedule.flow_id)
                    later = now + timedelta(seconds=RETRY_SECONDS)
                    self.schedules[schedule.flow_id] = schedule.model_copy(
                        update={"next_execution_at": later}
                    )

    def _due(self, now: datetime) -> list[ScheduleRecord]:
        return [
            s
            for s in self.schedules.values()
            if s.is_enabled and s.next_execution_at is not None and s.next_execution_at <= now
        ]

    async def _run(self) -> None:
        while True:
            self._wake.clear()
            await self.tick()
            upcoming = [
                s.next_execution_at
                for s in self.schedules.values()
                if s.is_enabled and s.next_execution_at is not None
            ]
            waits: list[asyncio.Future[Any]] = [asyncio.ensure_future(self._wake.wait())]
            if upcoming:
                waits.append(asyncio.ensure_future(self.clock.sleep_until(min(upcoming))))
            try:
                await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiting in waits:
                    waiting.cancel()

    async def _fire(self, schedule: ScheduleRecord, now: datetime) -> None:
        due = schedule.next_execution_at
        assert due is not None
        following = cron.next_after(schedule.cron_expression, schedule.timezone, now)
        extras: dict[str, Any] = {"due_at": cron.iso(due)}
        if due < self.started_at:
            missed = cron.count_between(
                schedule.cron_expression, schedule.timezone, due, self.started_at
            )
            extras["details"] = {"missed": missed, "catch_up": schedule.catch_up}
            if schedule.catch_up == "skip":
                await self._write(
                    schedule, SchedulePatch(next_execution_at=following), "missed",
                    f"{missed} firings fell due while the server was down (catch_up skip)",
                    **extras,
                )  # fmt: skip
                return
        if schedule.budget_cap is not None and schedule.spent >= schedule.budget_cap:
            await self._exhaust(schedule)
            return
        active = self._active_run(schedule)
        if active is not None:
            owed = schedule.overlap == "queue"
            patch = SchedulePatch(next_execution_at=following)
            if owed:
                patch = SchedulePatch(next_execution_at=following, pending=True)
            await self._write(
                schedule, patch,
                "deferred" if owed else "skipped",
                f"the previous run {public_id(active)} is still active"
                + ("; this one starts when it ends" if owed else ""),
                **extras,
            )  # fmt: skip
            return
        await self._start_run(schedule, due, following, **extras)

    async def _start_run(
        self, schedule: ScheduleRecord, due: datetime, following: datetime | None, **extras: Any
    ) -> None:
        run_id = f"{public_id(schedule.id)}-{cron.stamp(due)}"
        patch: dict[str, Any] = {"pending": False}
        if following is not None:
            patch["next_execution_at"] = following
        try:
            conversation_id = await self._open_run(schedule, run_id)
        except Exception as exc:
            error = as_api_error(exc)
            if error is None:
                raise
            await self._write(
                schedule, SchedulePatch(**patch), "failed", f"no run started: {error.message}",
                **extras,
            )  # fmt: skip
            return
        patch |= {
            "last_execution_at": self.clock.now(),
            "execution_count": schedule.execution_count + 1,
            "last_conversation_id": conversation_id,
        }
        caught_up = due < self.started_at
        await self._write(
            schedule, SchedulePatch(**patch), "fired",
            f"started {public_id(conversation_id)}" + (" (catching up)" if caught_up else ""),
            conversation_id=public_id(conversation_id), **extras,
        )  # fmt: skip

    async def _open_run(self, schedule: ScheduleRecord, run_id: str) -> str:
        """The run's conversation, created and admitted (or found, when an earlier
        attempt at this firing created it)."""
        flow = schedule.flow
        remaining = None
        if schedule.budget_cap is not None:
            remaining = round(schedule.budget_cap - schedule.spent, 6)
        limits = [x for x in (flow.get("max_budget_per_task"), remaining) if x is not None]
        budget = min(limits) if limits else None
        request = conversation_request(
            None,
            conversation_id=run_id, initial_user_msg=flow["message"],
            title=flow.get("title") or f"{public_id(schedule.flow_id)} run",
            agent=flow.get("agent"), repository=flow.get("repository"),
            git_provider=flow.get("git_provider"), selected_branch=flow.get("branch"),
            max_iterations=flow.get("max_iterations"), max_budget_per_task=budget,
            priority=flow.get("priority", 5),
        )  # fmt: skip
        user = User(schedule.owner)
        new = self.service.new_conversation(request, user, trigger="schedule")
        new = new.model_copy(update={"settings": {**new.settings, "schedule": schedule.flow_id}})
        message = MessageAction(source="user", args=MessageArgs(content=flow["message"]))
        runs = self.service.runs
        try:
            async with runs.admission(new.id) as admission:
                admission.check(schedule.owner)
                record, _ = await self.storage.create_conversation_with_events(new, [message])
                if (spec := flow.get("webhook")) is not None:
                    origin = f"schedule:{schedule.flow_id}"
                    await self.webhooks.attach(
                        record.id, schedule.owner, origin, WebhookSpec.model_validate(spec)
                    )
                await admission.admit(record.id, record.owner, record.priority)
        except ConversationExists:
            existing = await self.storage.get_conversation(new.id)
            if existing.agent_state is None and existing.status == "STOPPED":
                await self.service.start(existing.id)  # created, never admitted: a crash
        return new.id

    def _active_run(self, schedule: ScheduleRecord) -> str | None:
        run = schedule.last_conversation_id
        if run is None:
            return None
        sessions = self.service.sessions
        running = self.service.run_of(run) is not None or sessions.is_running(run)
        if running or sessions.queue_position(run) is not None:
            return run
        return None

    async def _exhaust(self, schedule: ScheduleRecord) -> None:
        await self._write(
            schedule, SchedulePatch(is_enabled=False, next_execution_at=None, pending=False),
            "exhausted",
            f"the budget cap of {schedule.budget_cap:g} is spent ({schedule.spent:g}); "
            "the schedule is disabled",
        )  # fmt: skip

    async def _write(
        self, schedule: ScheduleRecord, patch: SchedulePatch, change: str, reason: str,
        **extras: Any,
    ) -> ScheduleRecord:  # fmt: skip
        after = schedule.model_copy(update=patch.changes())
        record, _ = await self.storage.update_schedule(
            schedule.flow_id, patch, schedule_event(after, change, reason, **extras)
        )
        self.schedules[record.flow_id] = record
        return record

    # -- the run owner's hook --------------------------------------------------------

    async def run_settled(self, conversation_id: str, outcome: RunOutcome) -> None:
        """A run ended: what it spent counts against the cap; an owed run starts."""
        try:
            record = await self.storage.get_conversation(conversation_id)
        except ConversationNotFound:
            return
        flow_id = record.settings.get("schedule")
        if flow_id is None or outcome.continues:
            return
        async with self._firing:
            schedule = self.schedules.get(flow_id)
            if schedule is None:
                return
            with contextlib.suppress(ScheduleNotFound, ConversationNotFound):
                if outcome.cost > 0:
                    schedule = await self._write(
                        schedule, SchedulePatch(spent=round(schedule.spent + outcome.cost, 9)),
                        "spent", f"{public_id(conversation_id)} spent {outcome.cost:g}",
                        conversation_id=public_id(conversation_id),
                    )  # fmt: skip
                if not schedule.pending or not schedule.is_enabled:
                    return
                if schedule.budget_cap is not None and schedule.spent >= schedule.budget_cap:
                    await self._exhaust(schedule)
                    return
                await self._start_run(schedule, self.clock.now(), None, details={"owed": True})
