"""Conformance of the task, schedule and webhook stores (part of `StorageConformance`:
every backend runs it). A task's or a schedule's change is its record and its log event
in one transaction; what belongs to a conversation goes when it is deleted."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from events import EventBase, ScheduleObservation, TaskStateObservation
from events.automation import ScheduleExtras, TaskStateExtras
from storage import (
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    NewConversation,
    NewDelivery,
    NewSchedule,
    NewTask,
    NewWebhook,
    ScheduleExists,
    ScheduleNotFound,
    SchedulePatch,
    Storage,
    TaskNotFound,
    TaskPatch,
    TaskStateConflict,
)
from tests.storage.factories import say


def task_event(task_id: str, status: str) -> EventBase:
    extras = TaskStateExtras(task_id=task_id, kind="background", status=status)
    return TaskStateObservation(source="environment", extras=extras)


def schedule_event(flow_id: str, change: str) -> EventBase:
    return ScheduleObservation(
        source="environment", extras=ScheduleExtras(flow_id=flow_id, change=change)
    )


async def new_task(storage: Storage, task_id: str, owner: str | None = None) -> None:
    await storage.create_task(
        NewTask(kind="background", status="created", priority=3, spec={"task_type": "shell"}),
        NewConversation(id=task_id, owner=owner, priority=3),
        [task_event(task_id, "created"), say("run it")],
    )


async def new_schedule(storage: Storage, flow_id: str, owner: str | None = None) -> str:
    log_id = f"log-{flow_id}"
    await storage.create_schedule(
        NewSchedule(
            flow_id=flow_id,
            cron_expression="0 9 * * *",
            flow={"message": "hello"},
            next_execution_at=datetime(2030, 1, 1, 9, tzinfo=UTC),
        ),
        NewConversation(id=log_id, owner=owner),
        [schedule_event(flow_id, "created")],
    )
    return log_id


class AutomationConformance:
    # -- tasks -----------------------------------------------------------------------

    async def test_a_task_is_created_with_its_conversation(self, storage: Storage) -> None:
        task, record, stored = await storage.create_task(
            NewTask(kind="single", status="created", timeout_seconds=2.5, spec={"a": [1]}),
            NewConversation(id="t1", owner="alice", title="job"),
            [task_event("t1", "created"), say("go")],
        )
        assert (task.id, task.owner, task.kind, task.status) == ("t1", "alice", "single", "created")
        assert (task.timeout_seconds, task.spec, task.outcome) == (2.5, {"a": [1]}, {})
        assert task.started_at is None
        assert task.finished_at is None
        assert record.id == "t1"
        assert record.title == "job"
        assert [event.id for event in stored] == [0, 1]
        assert await storage.get_task("t1") == task
        with pytest.raises(ConversationExists):
            await new_task(storage, "t1")
        assert await storage.latest_event_id("t1") == 1
        with pytest.raises(TaskNotFound):
            await storage.get_task("nope")

    async def test_a_task_change_is_one_write_with_its_event(self, storage: Storage) -> None:
        await new_task(storage, "t2")
        started = datetime(2030, 1, 1, tzinfo=UTC)
        task, stored = await storage.update_task(
            "t2",
            TaskPatch(status="running", started_at=started, outcome={"x": 1}),
            task_event("t2", "running"),
            only_from=["created"],
        )
        assert (task.status, task.started_at, task.outcome, task.detail) == (
            "running", started, {"x": 1}, "",
        )  # fmt: skip
        assert stored.id == 2
        assert stored.to_dict()["extras"]["status"] == "running"
        with pytest.raises(TaskStateConflict):
            await storage.update_task(
                "t2", TaskPatch(status="cancelled"), task_event("t2", "x"), only_from=["created"]
            )
        assert await storage.latest_event_id("t2") == 2  # the refused change wrote nothing
        assert (await storage.get_task("t2")).status == "running"
        with pytest.raises(TaskNotFound):
            await storage.update_task("none", TaskPatch(status="x"), task_event("none", "x"))

    async def test_tasks_list_newest_first_narrowed_and_paged(self, storage: Storage) -> None:
        for index in range(5):
            await new_task(storage, f"l{index}", owner="alice" if index % 2 == 0 else "bob")
        await storage.update_task("l4", TaskPatch(status="completed"), task_event("l4", "c"))
        mine = await storage.list_tasks(owner="alice")
        assert [task.id for task in mine.tasks] == ["l4", "l2", "l0"]
        first = await storage.list_tasks(limit=2)
        assert [task.id for task in first.tasks] == ["l4", "l3"]
        second = await storage.list_tasks(limit=2, cursor=first.next_cursor)
        assert [task.id for task in second.tasks] == ["l2", "l1"]
        done = await storage.list_tasks(statuses=["completed"])
        assert [task.id for task in done.tasks] == ["l4"]
        assert (await storage.list_tasks(kinds=["start"])).tasks == []
        with pytest.raises(InvalidCursor):
            await storage.list_tasks(cursor="not-a-cursor")

    async def test_deleting_the_conversation_deletes_its_task(self, storage: Storage) -> None:
        await new_task(storage, "gone")
        await storage.delete_conversation("gone")
        with pytest.raises(TaskNotFound):
            await storage.get_task("gone")
        with pytest.raises(TaskNotFound):
            await storage.update_task("gone", TaskPatch(status="x"), task_event("gone", "x"))

    # -- schedules -------------------------------------------------------------------

    async def test_schedules_are_created_read_and_unique(self, storage: Storage) -> None:
        log_id = await new_schedule(storage, "alice/nightly", owner="alice")
        schedule = await storage.get_schedule("alice/nightly")
        assert (schedule.id, schedule.owner, schedule.flow) == (
            log_id,
            "alice",
            {"message": "hello"},
        )
        assert schedule.next_execution_at == datetime(2030, 1, 1, 9, tzinfo=UTC)
        assert (schedule.execution_count, schedule.spent, schedule.pending) == (0, 0.0, False)
        assert await storage.latest_event_id(log_id) == 0
        with pytest.raises(ScheduleExists):
            await storage.create_schedule(
                NewSchedule(flow_id="alice/nightly", cron_expression="* * * * *"),
                NewConversation(id="another-log", owner="alice"),
                [],
            )
        with pytest.raises(ConversationNotFound):  # the refused creation wrote no log
            await storage.get_conversation("another-log")
        with pytest.raises(ScheduleNotFound):
            await storage.get_schedule("bob/nightly")

    async def test_schedule_changes_and_deletion_are_logged(self, storage: Storage) -> None:
        log_id = await new_schedule(storage, "s1")
        fired = datetime(2030, 1, 1, 9, tzinfo=UTC)
        schedule, stored = await storage.update_schedule(
            "s1",
            SchedulePatch(
                last_execution_at=fired, next_execution_at=fired + timedelta(days=1),
                execution_count=1, last_conversation_id="run-1", spent=0.5, pending=True,
                flow={"message": "changed"},
            ),
            schedule_event("s1", "fired"),
        )  # fmt: skip
        assert (schedule.execution_count, schedule.last_conversation_id) == (1, "run-1")
        assert (schedule.spent, schedule.pending, schedule.flow) == (
            0.5,
            True,
            {"message": "changed"},
        )
        assert schedule.last_execution_at == fired
        assert stored.conversation_id == log_id
        assert stored.id == 1
        deleted = await storage.delete_schedule("s1", schedule_event("s1", "deleted"))
        assert deleted.id == 2
        with pytest.raises(ScheduleNotFound):
            await storage.get_schedule("s1")
        with pytest.raises(ScheduleNotFound):
            await storage.delete_schedule("s1", schedule_event("s1", "deleted"))
        assert await storage.latest_event_id(log_id) == 2  # the log stays

    async def test_schedules_list_in_creation_order(self, storage: Storage) -> None:
        for index in range(3):
            await new_schedule(storage, f"f{index}", owner="alice" if index != 1 else "bob")
        page = await storage.list_schedules(limit=2)
        assert [s.flow_id for s in page.schedules] == ["f0", "f1"]
        rest = await storage.list_schedules(limit=2, cursor=page.next_cursor)
        assert [s.flow_id for s in rest.schedules] == ["f2"]
        assert rest.next_cursor is None
        assert [s.flow_id for s in (await storage.list_schedules(owner="bob")).schedules] == ["f1"]
        await storage.delete_conversation("log-f1")  # its log gone, the schedule goes too
        assert [s.flow_id for s in (await storage.list_schedules()).schedules] == ["f0", "f2"]

    # -- webhooks --------------------------------------------------------------------

    async def test_webhooks_and_their_deliveries(self, storage: Storage) -> None:
        await storage.create_conversation(NewConversation(id="hooked", owner="alice"))
        with pytest.raises(ConversationNotFound):
            await storage.put_webhook(
                NewWebhook(conversation_id="none", origin="x", url="http://h/", secret="s")
            )
        first = await storage.put_webhook(
            NewWebhook(
                conversation_id="hooked", owner="alice", origin="task:hooked",
                url="http://127.0.0.1/a", secret="k", event_kinds=["observation:task_state"],
            )
        )  # fmt: skip
        assert (first.delivered_through, first.event_kinds) == (-1, ["observation:task_state"])
        hook = await storage.put_webhook(
            NewWebhook(conversation_id="hooked", origin="task:hooked", url="http://h/b", secret="k")
        )
        assert await storage.get_webhook("hooked") == hook  # replaced, not added
        assert [w.url for w in await storage.list_webhooks()] == ["http://h/b"]

        def attempt(number: int, outcome: str) -> NewDelivery:
            return NewDelivery(
                webhook_id=hook.id, origin="task:hooked", conversation_id="hooked",
                event_id=4, event_kind="observation:task_state", attempt=number,
                outcome=outcome, http_status=500 if outcome == "retrying" else 200,
            )  # fmt: skip

        await storage.record_delivery(attempt(1, "retrying"))
        assert (await storage.get_webhook("hooked")).delivered_through == -1  # type: ignore[union-attr]
        done = await storage.record_delivery(attempt(2, "delivered"), delivered_through=4)
        assert (done.attempt, done.outcome, done.http_status) == (2, "delivered", 200)
        await storage.record_delivery(attempt(3, "delivered"), delivered_through=2)
        assert (await storage.get_webhook("hooked")).delivered_through == 4  # type: ignore[union-attr]
        page = await storage.list_deliveries(origin="task:hooked", limit=2)
        assert [d.attempt for d in page.deliveries] == [3, 2]
        older = await storage.list_deliveries(origin="task:hooked", before=page.next_cursor)
        assert [d.attempt for d in older.deliveries] == [1]
        assert (await storage.list_deliveries(origin="schedule:x")).deliveries == []
        assert await storage.delete_webhook("hooked") is True
        assert await storage.delete_webhook("hooked") is False
        await storage.put_webhook(
            NewWebhook(conversation_id="hooked", origin="task:hooked", url="http://h/", secret="k")
        )
        await storage.delete_conversation("hooked")
        assert await storage.get_webhook("hooked") is None
        assert (await storage.list_deliveries(conversation_id="hooked")).deliveries == []

    async def test_task_changes_beside_busy_appends(self, storage: Storage) -> None:
        await new_task(storage, "busy")
        await storage.create_conversation(NewConversation(id="other"))
        appends = [storage.append("other", say(f"m{index}")) for index in range(50)]
        change = storage.update_task("busy", TaskPatch(status="running"), task_event("busy", "r"))
        results = await asyncio.gather(*appends, change)
        assert sorted(stored.id for stored in results[:-1]) == list(range(50))
        assert (await storage.get_task("busy")).status == "running"
        assert await storage.latest_event_id("busy") == 2
