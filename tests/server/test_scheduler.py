"""The scheduler with an injected clock (time never passes by itself; nothing sleeps to
make it): firings, overlap (skip and queue), catch-up after a restart, the budget cap.
Everything else is real: the SQLite store, the conversation service and its run owner,
the local runtime, the agents (the LLM one against a scripted model server)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from server.auth import User
from server.runtimes import prepare_data_dir
from server.service import ConversationService
from server.settings import Settings
from server.tasks import Automation
from server.tasks.schedule_models import CreateSchedule
from storage import ScheduleRecord, Storage
from storage.sqlite import SqliteStorage
from tests.fakes.model_server import ScriptedModel, serving, tool
from tests.reachable import reachable

LOCAL = User(None)


class ManualClock:
    """A clock the test moves; the scheduler's own loop is not started (the test calls
    ``tick``), so ``sleep_until`` is never awaited."""

    def __init__(self, moment: datetime) -> None:
        self.moment = moment

    def now(self) -> datetime:
        return self.moment

    async def sleep_until(self, moment: datetime) -> None:
        raise AssertionError("the test moves time itself")


@dataclass
class Server:
    storage: Storage
    service: ConversationService
    automation: Automation

    async def schedule(self, **fields: Any) -> ScheduleRecord:
        return await self.automation.schedules.create(LOCAL, CreateSchedule.model_validate(fields))

    async def tick(self, moment: datetime) -> ScheduleRecord | None:
        clock = self.automation.scheduler.clock
        assert isinstance(clock, ManualClock)
        clock.moment = moment
        await self.automation.scheduler.tick()
        return None

    async def get(self, flow_id: str) -> ScheduleRecord:
        return await self.storage.get_schedule(flow_id)


@contextlib.asynccontextmanager
async def running(data_dir: Path, moment: datetime, **settings: Any) -> AsyncIterator[Server]:
    """The server's parts as `create_app` builds them, on ``data_dir``."""
    config = Settings(
        data_dir=reachable(data_dir), demo_pace=0.0, schedule_min_interval=1.0, **settings
    )
    prepare_data_dir(config)
    storage = await SqliteStorage.open(config.storage_dir)
    service = ConversationService(storage, config)
    automation = Automation(service, config, clock=ManualClock(moment))
    await automation.recover()
    await service.recover()
    try:
        yield Server(storage, service, automation)
    finally:
        await automation.close()
        await service.shutdown()
        await automation.close_webhooks()
        await storage.close()


Event = dict[str, Any]


async def log_until(
    storage: Storage, conversation_id: str, done: Callable[[Event], bool]
) -> list[Event]:
    """The conversation's events, as they come, until one satisfies ``done``."""
    seen: list[Event] = []
    async with asyncio.timeout(30), storage.subscribe(conversation_id) as events:
        async for stored in events:
            seen.append(stored.to_dict())
            if done(seen[-1]):
                return seen
    return seen


def ended(event: Event) -> bool:
    return event.get("observation") == "agent_state_changed" and event["extras"]["agent_state"] in (
        "finished",
        "stopped",
        "error",
    )


def change(name: str) -> Callable[[dict], bool]:  # type: ignore[type-arg]
    return lambda event: (
        event.get("observation") == "schedule" and event["extras"]["change"] == name
    )


def changes(events: list[Event]) -> list[str]:
    return [e["extras"]["change"] for e in events if e.get("observation") == "schedule"]


def at(hour: int, minute: int = 0, day: int = 1) -> datetime:
    return datetime(2030, 1, day, hour, minute, tzinfo=UTC)


async def test_firings_and_overlap_skip(tmp_path: Path) -> None:
    async with running(tmp_path / "data", at(7, 30)) as server:
        schedule = await server.schedule(
            flow_id="daily", cron_expression="0 9 * * *", timezone="Europe/Paris",
            flow={"message": "sleep 30", "agent": "shell"},
        )  # fmt: skip
        assert schedule.next_execution_at == at(8)  # 9:00 in Paris is 8:00 UTC
        await server.tick(at(7, 59))
        assert (await server.get("daily")).execution_count == 0  # not due yet
        await server.tick(at(8, 0, day=1))
        fired = await server.get("daily")
        assert (fired.execution_count, fired.next_execution_at) == (1, at(8, day=2))
        run = fired.last_conversation_id
        assert run is not None
        assert run.endswith("-20300101T080000Z")
        await log_until(server.storage, run, lambda e: e.get("action") == "run")  # the command runs
        await server.tick(at(8, 0, day=2))  # the previous run is still active: skipped
        skipped = await server.get("daily")
        assert (skipped.execution_count, skipped.next_execution_at) == (1, at(8, day=3))
        await server.service.stop(run)
        events = await log_until(server.storage, schedule.id, change("skipped"))
        assert changes(events) == ["created", "fired", "skipped"]
        assert events[-1]["extras"]["reason"].startswith(f"the previous run {run} is still")
        assert events[1]["extras"]["conversation_id"] == run


async def test_overlap_queue_starts_the_owed_run_when_the_last_ends(tmp_path: Path) -> None:
    async with running(tmp_path / "data", at(8, 30)) as server:
        schedule = await server.schedule(
            flow_id="hourly", cron_expression="0 * * * *", overlap_policy="queue",
            flow={"message": "sleep 2", "agent": "shell"},
        )  # fmt: skip
        await server.tick(at(9))
        first = (await server.get("hourly")).last_conversation_id
        assert first is not None
        await log_until(server.storage, first, lambda e: e.get("action") == "run")
        await server.tick(at(10))
        deferred = await server.get("hourly")
        assert (deferred.pending, deferred.execution_count) == (True, 1)
        events = await log_until(server.storage, schedule.id, change("fired"))
        events = await log_until(
            server.storage, schedule.id, lambda e: change("fired")(e) and e["id"] > events[-1]["id"]
        )
        assert changes(events) == ["created", "fired", "deferred", "fired"]
        owed = await server.get("hourly")
        assert (owed.pending, owed.execution_count) == (False, 2)
        assert owed.last_conversation_id != first
        await log_until(server.storage, owed.last_conversation_id or "", ended)
        record = await server.storage.get_conversation(first)
        assert record.agent_state == "finished"  # the owed run started after it ended


async def test_catch_up_after_a_restart(tmp_path: Path) -> None:
    data = tmp_path / "data"
    async with running(data, at(9, 30)) as server:
        once = await server.schedule(
            flow_id="once", cron_expression="0 * * * *", flow={"message": "echo caught up",
                                                               "agent": "shell"},
        )  # fmt: skip
        skip = await server.schedule(
            flow_id="skip", cron_expression="0 * * * *", catch_up="skip",
            flow={"message": "echo never", "agent": "shell"},
        )  # fmt: skip
    # Down from 9:30 to 12:30: 10:00, 11:00 and 12:00 were missed.
    async with running(data, at(12, 30)) as server:
        await server.tick(at(12, 30))
        caught = await server.get("once")
        assert (caught.execution_count, caught.next_execution_at) == (1, at(13))
        assert caught.last_conversation_id is not None
        assert caught.last_conversation_id.endswith("-20300101T100000Z")  # the first missed
        events = await log_until(server.storage, once.id, change("fired"))
        assert events[-1]["extras"]["details"] == {"missed": 3, "catch_up": "once"}
        assert events[-1]["extras"]["reason"].endswith("(catching up)")
        skipped = await server.get("skip")
        assert (skipped.execution_count, skipped.next_execution_at) == (0, at(13))
        events = await log_until(server.storage, skip.id, change("missed"))
        assert events[-1]["extras"]["reason"].startswith("3 firings fell due")
        await log_until(server.storage, caught.last_conversation_id, ended)
        await server.tick(at(13))  # after the catch-up, firings are on time again
        assert (await server.get("once")).last_conversation_id.endswith("-20300101T130000Z")  # type: ignore[union-attr]


async def test_the_budget_cap_disables_the_schedule(tmp_path: Path) -> None:
    model = ScriptedModel([tool("finish", message="done")])  # one call: 1000 prompt tokens
    async with (
        serving(model) as base_url,
        running(
            tmp_path / "data", at(8, 30), llm_base_url=base_url, llm_input_cost=1000.0
        ) as server,
    ):  # a call costs 1000 tokens * 1000 per million = 1.0
        schedule = await server.schedule(
            flow_id="costly", cron_expression="0 * * * *", budget_cap=1.0,
            flow={"message": "spend", "agent": "llm", "max_budget_per_task": 5.0},
        )  # fmt: skip
        await server.tick(at(9))
        run = (await server.get("costly")).last_conversation_id
        assert run is not None
        record = await server.storage.get_conversation(run)
        assert record.max_budget == 1.0  # what is left of the cap, not the flow's 5.0
        await log_until(server.storage, schedule.id, change("spent"))
        assert (await server.get("costly")).spent == 1.0
        await server.tick(at(10))
        exhausted = await server.get("costly")
        assert (exhausted.is_enabled, exhausted.execution_count) == (False, 1)
        assert exhausted.next_execution_at is None
        events = await log_until(server.storage, schedule.id, change("exhausted"))
        assert "budget cap of 1 is spent" in events[-1]["extras"]["reason"]
