"""The page items of issue 12, each in Chromium against a real server: the empty state,
the layout at 1280x800 and on a phone, a run held at a limit shown as needing its user
(with the button that raises the limit), one row per plan update, rename and delete,
search results with snippet, highlight, time and a link, filters kept per conversation,
notices that go when they no longer hold, and state and status agreeing after a server
restart."""

from __future__ import annotations

import asyncio
import json
import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.fakes.model_server import ScriptedModel, serving, tool
from tests.server.browser import Page, open_page
from tests.server.clients import agent_state, create, follow
from tests.server.conftest import FAST
from tests.server.relay import relay_to
from tests.server.running import RunningServer
from tests.server.test_page import EXPECTED_NOISE, _trajectory, row

IN_VIEW = """(s) => {
  const box = document.querySelector(s)?.getBoundingClientRect();
  return Boolean(box) && box.height > 0 && box.top >= 0 && box.bottom <= window.innerHeight
    && box.left >= 0 && box.right <= window.innerWidth;
}"""


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(
        tmp_path_factory.mktemp("page-items"), env={"THREADLINE_DEMO_PACE": "0.1"}
    ).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def http(page_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=page_server.url, timeout=20) as client:
        yield client


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    configured = os.environ.get("THREADLINE_SCREENSHOTS")
    return Path(configured).resolve() if configured else tmp_path / "screenshots"


async def in_view(page: Page, selector: str) -> bool:
    return bool(await page.eval(IN_VIEW, selector))


async def test_the_empty_state_says_what_to_do(fresh_server: RunningServer, shots: Path) -> None:
    fresh_server.start()
    async with open_page(width=1280, height=800) as page:
        await page.goto(f"{fresh_server.url}/")
        await page.wait("() => !document.querySelector('#welcome-empty').hidden")
        text = await page.text("#welcome-empty")
        for words in ("No conversations yet", "demo", "needs no model", "threadline tail"):
            assert words in text
        assert await page.prop("#create", "open")  # the form is there to fill
        assert not await page.prop("#list-empty", "hidden")
        await page.screenshot(shots / "empty.png")
        await page.click("#welcome-create")
        assert await page.eval("() => document.activeElement.name") == "initial_user_msg"
        assert await page.errors() == []


async def test_list_and_message_box_in_view_at_1280x800_and_on_a_phone(
    page_server: RunningServer, http: httpx.AsyncClient, shots: Path
) -> None:
    for number in range(12):  # more than fit: the list scrolls on its own
        await create(http, title=f"earlier {number}")
    busy = await create(http, initial_user_msg="look around", max_iterations=40)
    await follow(page_server, busy)
    async with open_page(width=1280, height=800) as page:
        await page.goto(f"{page_server.url}/")
        await page.wait_for(row(busy))
        assert not await page.prop("#create", "open")  # conversations exist: folded
        assert await in_view(page, f"{row(busy)} a")
        await page.click(f"{row(busy)} a")
        await page.wait_text("#agent-state", "finished")
        for selector in ("#message-input", "#message-form button", f"{row(busy)} a", "#events"):
            assert await in_view(page, selector), selector
        await page.screenshot(shots / "conversation.png")
        assert await page.errors() == []

    async with open_page(width=390, height=844) as page:
        await page.goto(f"{page_server.url}/")
        await page.wait_for(row(busy))
        assert await in_view(page, f"{row(busy)} a")
        await page.screenshot(shots / "list.png")
        await page.click(f"{row(busy)} a")
        await page.wait_text("#agent-state", "finished")
        assert await in_view(page, "#message-input")
        assert await in_view(page, "#message-form button")
        overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
        assert await page.eval(overflow) <= 0
        await page.screenshot(shots / "phone.png")
        assert await page.errors() == []


async def test_held_at_the_iteration_limit_it_needs_you_and_one_row_per_plan_update(
    page_server: RunningServer, http: httpx.AsyncClient, shots: Path
) -> None:
    conversation_id = await create(http, initial_user_msg="look around", max_iterations=3)
    async with open_page(width=1280, height=800) as page:
        await page.goto(f"{page_server.url}/#/c/{conversation_id}")
        await page.wait("() => !document.querySelector('#attention').hidden")
        assert await page.text("#agent-state") == "error"
        assert await page.text("#conversation-status") == "RUNNING"
        assert "the iteration limit was reached (3 of 3 steps)" in await page.text("#attention")
        assert await page.data("#attention", "held") == ["iteration"]
        await page.wait_text(f"{row(conversation_id)} .status", "NEEDS YOU")
        await page.screenshot(shots / "held.png")

        await page.click("#raise-limit")  # raises it by its increment: 6
        await page.wait(
            "() => /of 6$/.test(document.querySelector('#iterations-text').textContent)"
        )
        await page.wait("() => !document.querySelector('#attention').hidden")  # held at 6
        await page.click("#raise-limit")
        while (await page.text("#agent-state")) != "finished":
            if not await page.prop("#attention", "hidden"):
                await page.click("#raise-limit")
            await asyncio.sleep(0.2)
        assert await page.prop("#attention", "hidden")
        await page.wait(
            "(s) => document.querySelector(s)?.textContent !== 'NEEDS YOU'",
            f"{row(conversation_id)} .status",
        )

        # One row per plan update: the runtime's answer joins the plan's row.
        stored = (
            await http.get(f"/api/conversations/{conversation_id}/events", params={"limit": 100})
        ).json()["events"]
        plans = [e["id"] for e in stored if e.get("action") == "task_tracking"]
        answers = [e["id"] for e in stored if e.get("observation") == "task_tracking"]
        assert len(plans) == len(answers) >= 4
        assert [
            int(i) for i in await page.data("[data-kind='action:task_tracking']", "id")
        ] == plans
        assert [int(i) for i in await page.data("[data-kind='action:task_tracking']", "also")] == (
            answers
        )
        assert await page.texts("[data-kind='observation:task_tracking']") == []
        assert await page.shown_ids() == [e["id"] for e in stored]
        assert await page.errors() == []


async def test_held_at_the_budget_it_needs_you(tmp_path: Path) -> None:
    model = ScriptedModel([*(tool("think", thought=f"step {n}") for n in range(6))])
    async with serving(model) as base_url:
        env = {
            "THREADLINE_LLM_BASE_URL": base_url,
            "THREADLINE_LLM_INPUT_COST": "1.0",
            "THREADLINE_LLM_OUTPUT_COST": "2.0",
        }
        server = RunningServer(tmp_path / "server", env={**FAST, **env}).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
                conversation_id = await create(
                    http, initial_user_msg="spend", agent="llm", max_budget_per_task=0.002
                )
                await follow(server, conversation_id, until=lambda e: agent_state(e) == "error")
            async with open_page() as page:
                await page.goto(f"{server.url}/#/c/{conversation_id}")
                await page.wait("() => !document.querySelector('#attention').hidden")
                assert await page.data("#attention", "held") == ["budget"]
                assert "(0.0024 USD spent of 0.002 USD)" in await page.text("#attention")
                assert await page.text("#budget-text") == "0.0024 USD of 0.002 USD"
                assert not await page.prop("#raise-limit", "hidden")
                await page.click("#raise-limit")
                # Raised by its increment; the agent spends on, to the next hold.
                await page.wait_text("#budget-text", "0.0048 USD of 0.004 USD")
                await page.wait_text("#agent-state", "error")
                assert await page.errors() == []
        finally:
            server.stop()


async def test_rename_and_delete(page_server: RunningServer, http: httpx.AsyncClient) -> None:
    conversation_id = await create(http, title="before")
    async with open_page() as page:
        await page.goto(f"{page_server.url}/#/c/{conversation_id}")
        await page.wait_text("#conversation-title", "before")
        await page.click("#rename")
        assert await page.prop("#rename-input", "value") == "before"
        await page.fill("#rename-input", "after")
        await page.click("#rename-form button")
        await page.wait_text("#conversation-title", "after")
        await page.wait_text(f"{row(conversation_id)} .title", "after")
        assert (await http.get(f"/api/conversations/{conversation_id}")).json()["title"] == "after"

        await page.click("#delete")
        assert not await page.prop("#delete-confirm", "hidden")
        await page.click("#delete-no")  # kept
        assert (await http.get(f"/api/conversations/{conversation_id}")).status_code == 200
        await page.click("#delete")
        await page.click("#delete-yes")
        await page.wait("() => location.hash === '#/'")
        await page.wait_text("#notice", "Deleted “after”.")
        await page.wait(f'() => !document.querySelector("{row(conversation_id)}")')
        assert (await http.get(f"/api/conversations/{conversation_id}")).status_code == 404
        assert await page.errors() == []


async def test_search_results_show_snippet_highlight_time_and_lead_to_the_event(
    page_server: RunningServer, http: httpx.AsyncClient, shots: Path
) -> None:
    conversation_id = await create(
        http, title="slugify fix (replayed)", replay_json=json.dumps(_trajectory())
    )
    async with open_page() as page:
        await page.goto(f"{page_server.url}/#/c/{conversation_id}")
        await page.wait_for("#events > li[data-id='10']")
        await page.fill("#global-q", "slugify")
        await page.click("#global-search button")
        await page.wait_for("#global-results .results li")
        first = "#global-results .results li"
        assert await page.texts(f"{first} .where") != []
        marks = await page.texts("#global-results mark")
        assert marks
        assert {mark.lower() for mark in marks} == {"slugify"}
        assert await page.eval(
            "(s) => [...document.querySelectorAll(s)].every((e) => e.getAttribute('datetime'))",
            "#global-results .when time",
        )
        ids = await page.data(first, "id")
        hrefs = await page.eval(
            "(s) => [...document.querySelectorAll(s)].map((a) => a.getAttribute('href'))",
            f"{first} a",
        )
        assert hrefs[0] == f"#/c/{conversation_id}/{ids[0]}"
        await page.screenshot(shots / "search.png", full_page=True)
        await page.click(f"{first} a")
        await page.wait(f"() => document.activeElement?.dataset.id === '{ids[0]}'")

        # Within the conversation too: the words found are marked.
        await page.click("#history summary")
        await page.fill("#history-form [name=query]", "sandbox")
        await page.click("#history-form button")
        await page.wait_for("#history .results li mark")
        assert [m.lower() for m in await page.texts("#history mark")] == ["sandbox"]
        assert await page.errors() == []


async def test_history_filters_belong_to_their_conversation(
    page_server: RunningServer, http: httpx.AsyncClient
) -> None:
    first = await create(http, title="first", replay_json=json.dumps(_trajectory()))
    second = await create(http, title="second", replay_json=json.dumps(_trajectory()))
    checked = (
        "() => [...document.querySelectorAll('#history-form input:checked')].map((e) => e.value)"
    )
    async with open_page() as page:
        await page.goto(f"{page_server.url}/#/c/{first}")
        await page.wait_text("#conversation-title", "first")
        await page.click("#history summary")
        await page.fill("#history-form [name=query]", "pytest")
        await page.do("check", selector="#history-form input[value=run]")
        await page.do("select", selector="#history-form select[name=source]", value="agent")
        await page.click("#history-form button")
        await page.wait_text("#history .summary", "2 matching events")

        await page.goto(f"{page_server.url}/#/c/{second}")
        await page.wait_text("#conversation-title", "second")
        assert await page.prop("#history-form [name=query]", "value") == ""
        assert await page.eval(checked) == ["on"]  # only "skip hidden events", as at first
        assert await page.prop("#history-form select[name=source]", "value") == ""
        assert await page.texts("#history .results li") == []

        await page.goto(f"{page_server.url}/#/c/{first}")
        await page.wait_text("#conversation-title", "first")
        assert await page.prop("#history-form [name=query]", "value") == "pytest"
        assert sorted(await page.eval(checked)) == ["on", "run"]
        assert await page.prop("#history-form select[name=source]", "value") == "agent"
        assert await page.errors() == []


async def test_notices_go_once_they_no_longer_hold(
    page_server: RunningServer, http: httpx.AsyncClient
) -> None:
    conversation_id = await create(http, initial_user_msg="look around", max_iterations=2)
    async with relay_to(page_server.port) as relay, open_page() as page:
        await page.goto(f"{relay.url}/#/c/{conversation_id}")
        await page.wait_text("#agent-state", "error")
        await page.click("#stop")
        await page.wait_text("#notice", "stop: stopped")
        # A new run: the answer to the stop no longer holds.
        await page.fill("#message-input", "again")
        await page.click("#message-form button")
        await page.wait("() => document.querySelector('#agent-state').textContent !== 'stopped'")
        await page.wait_text("#notice", "")

        # The network goes: the list cannot load; it comes back: the notice goes.
        relay.hold()
        relay.cut()
        await page.wait(
            "() => document.querySelector('#notice').textContent.startsWith('Could not load')"
        )
        relay.release()
        await page.wait_text(
            "#notice",
            "",
        )
        await page.wait_text("#connection", "live")
        assert await page.errors(allow=(*EXPECTED_NOISE, "Failed to load resource")) == []


async def test_state_and_status_agree_after_a_server_restart(fresh_server: RunningServer) -> None:
    """The run's status is in no event: the page fetches it. When that fetch fails (the
    server going away as the last state event arrives), the page must fetch it again
    once it is connected again, or it shows a stopped agent RUNNING for good."""
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as http:
        conversation_id = await create(http, initial_user_msg="held", max_iterations=2)
        await follow(fresh_server, conversation_id, until=lambda e: agent_state(e) == "error")
    async with relay_to(fresh_server.port) as relay, open_page() as page:
        await page.goto(f"{relay.url}/#/c/{conversation_id}")
        await page.wait_text("#agent-state", "error")
        assert await page.text("#conversation-status") == "RUNNING"
        relay.hold_http()  # REST fails from here; the stream goes on
        await asyncio.to_thread(fresh_server.restart)  # the run is stopped at shutdown
        await page.wait_text("#agent-state", "stopped")
        await page.wait("() => document.querySelector('#connection').dataset.opens === '2'")
        await page.wait_text("#connection", "live")
        relay.release()
        await page.wait_text("#conversation-status", "STOPPED")
        assert await page.prop("#attention", "hidden")
        assert await page.errors(allow=(*EXPECTED_NOISE, "Failed to load resource")) == []
