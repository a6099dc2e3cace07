"""Tasks and schedules in the page (server/static/automation.js), in Chromium against a
real server: create from the forms, pause / resume / cancel a task, its last result,
a schedule's next and last run, disable / enable / delete."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from tests.server.browser import open_page
from tests.server.clients import agent_state, follow
from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("page-tasks"), env=QUICK).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def http(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=server.url, timeout=20) as client:
        yield client


def task_row(status: str) -> str:
    return f"#tasks li[data-status='{status}']"


async def test_tasks_in_the_page(server: RunningServer, http: httpx.AsyncClient) -> None:
    async with open_page() as page:
        await page.goto(f"{server.url}/")
        await page.wait_for("#automation #task-form")
        await page.click("#task-create summary")
        await page.do("select", selector="#task-form [name=task_type]", value="shell")
        await page.fill("#task-form [name=description]", "count slowly")
        await page.fill("#task-form [name=command]", "sleep 30")
        await page.fill("#task-form [name=priority]", "3")
        await page.click("#task-form button")
        await page.wait_for(task_row("running"))
        (task_id,) = await page.data(task_row("running"), "id")
        assert (await http.get(f"/api/tasks/{task_id}")).json()["priority"] == 3

        await page.click(f"{task_row('running')} button.pause")
        await follow(server, task_id, until=lambda event: agent_state(event) == "paused")
        await page.click(f"{task_row('running')} button.resume")
        await follow(server, task_id, until=lambda event: agent_state(event) == "running")
        await page.click(f"{task_row('running')} button.cancel")
        await page.wait_for(task_row("cancelled"))
        assert "stopped by the local user" in await page.text(f"{task_row('cancelled')} .result")

        await page.fill("#task-form [name=description]", "say hello")
        await page.do("select", selector="#task-form [name=task_type]", value="shell")
        await page.fill("#task-form [name=command]", "echo page-result")
        await page.click("#task-form button")
        await page.wait_for(task_row("completed"))
        assert "page-result" in await page.text(f"{task_row('completed')} .result")
        assert await page.errors() == []


async def test_schedules_in_the_page(server: RunningServer, http: httpx.AsyncClient) -> None:
    async with open_page() as page:
        await page.goto(f"{server.url}/")
        await page.click("#schedule-create summary")
        await page.fill("#schedule-form [name=flow_id]", "nightly")
        await page.fill("#schedule-form [name=cron_expression]", "0 3 * * *")
        await page.fill("#schedule-form [name=message]", "the nightly report")
        await page.click("#schedule-form button")
        row = "#schedules li[data-id='nightly']"
        await page.wait_for(f"{row} .next time")
        await page.click(f"{row} button.toggle")
        await page.wait_for(f"{row}[data-enabled='false']")
        assert await page.text(f"{row} .next") == "—"
        await page.click(f"{row} button.toggle")
        await page.wait_for(f"{row}[data-enabled='true'] .next time")
        await page.click(f"{row} button.delete")
        await page.wait("(s) => document.querySelector(s) === null", row)

        often = {
            "flow_id": "often", "cron_expression": "* * * * * */2",
            "flow": {"message": "echo from a schedule", "agent": "shell"},
        }  # fmt: skip
        assert (await http.post("/api/schedule", json=often)).status_code == 200
        await page.wait_text("#schedules li[data-id='often'] .result a", "finished")
        await http.put("/api/schedule/often", json={"is_enabled": False})
        assert await page.errors() == []
