"""The page at ``/`` (server/static) in a real browser: Debian's chromium driven by
playwright-core (`tests/js/page.mjs`), against a real server.

Where a test needs the run at a known point, the conversation's iteration limit holds it
there (a run held by its limit waits for a resume), so nothing depends on timing except
the pause, which the slow demo pace leaves seconds to land in.

The screenshots the README shows are taken by tests/server/test_page_items.py
(``scripts/screenshots`` refreshes them).
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import pytest_asyncio

from tests.server.browser import Page, open_page
from tests.server.clients import Event, agent_state, create, follow
from tests.server.conftest import FAST
from tests.server.relay import relay_to
from tests.server.running import RunningServer
from tests.server.test_auth import make_key

# Slow enough that a pause clicked when the plan appears lands mid-run.
PACE = {"THREADLINE_DEMO_PACE": "0.5"}
# What a browser logs when the network drops or the server answers 401; the page handles
# both (the tests check how), so these are not errors of the page.
EXPECTED_NOISE = ("WebSocket connection to", "net::ERR_", "status of 401")

PLAN = "#plan li"
EVENTS = "#events > li"


def row(conversation_id: str) -> str:
    return f"#conversations li[data-id='{conversation_id}']"


def of_kind(kind: str) -> str:
    return f"#events [data-kind='{kind}']"


@pytest.fixture(scope="module")
def paced_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("page-server"), env=PACE).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def http(paced_server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=paced_server.url, timeout=20) as client:
        yield client


async def wait_state(page: Page, state: str) -> None:
    await page.wait_text("#agent-state", state)


async def wait_iterations(page: Page, text: str) -> None:
    await page.wait_text("#iterations-text", text)


def agent_held(event: Event) -> bool:
    return agent_state(event) == "error"


async def shows_every_stored_event(
    page: Page, http: httpx.AsyncClient, conversation_id: str
) -> None:
    """The page shows each stored event once, in order. Its state may say finished (read
    over REST) a moment before the last events have streamed in: wait for them."""
    stored = await stored_ids(http, conversation_id)
    for _ in range(200):  # 10 s
        shown = await page.shown_ids()
        if len(shown) >= len(stored):
            break
        await asyncio.sleep(0.05)
    assert shown == stored


async def stored_ids(http: httpx.AsyncClient, conversation_id: str, **filters: str) -> list[int]:
    response = await http.get(
        f"/api/conversations/{conversation_id}/events", params={"limit": 100, **filters}
    )
    assert response.status_code == 200, response.text
    return [event["id"] for event in response.json()["events"]]


async def test_create_from_the_form_pause_resume_and_the_plan_ticks_to_done(
    paced_server: RunningServer, http: httpx.AsyncClient
) -> None:
    async with open_page() as page:
        await page.goto(f"{paced_server.url}/")
        await page.fill("#create-form [name=initial_user_msg]", "look around")
        await page.fill("#create-form [name=agent]", "demo")
        await page.fill("#create-form [name=max_iterations]", "40")
        await page.fill("#create-form [name=priority]", "7")
        await page.click("#create-form button")
        conversation_id = await page.wait("() => location.hash.match(/^#\\/c\\/(.+)$/)?.[1]")

        # The plan appears as a checklist; pause while the agent works on it.
        await page.wait_count(PLAN, 3)
        await page.click("#pause")
        await wait_state(page, "paused")
        assert await page.prop("#pause", "disabled")
        assert not await page.prop("#resume", "disabled")
        info = (await http.get(f"/api/conversations/{conversation_id}")).json()
        assert (info["agent_state"], info["max_iterations"], info["priority"]) == ("paused", 40, 7)
        assert await page.text("#iterations-text") == f"{info['iteration']} of 40"
        assert (await page.data(PLAN, "status"))[-1] != "done"

        await page.click("#resume")
        await wait_state(page, "finished")
        assert await page.data(PLAN, "status") == ["done", "done", "done"]

        # Commands with their output and exit code.
        outputs = await page.texts(of_kind("observation:run"))
        assert len(outputs) == 3
        assert all("exit code 0" in output for output in outputs)
        assert "REPORT.md" in outputs[-1]
        # Both controls were logged (who, through what) and shown like any event.
        assert await page.texts(f"{of_kind('action:change_agent_state')} .text") == [
            "pause requested by the local user via rest",
            "resume requested by the local user via rest",
        ]
        # Every event once: exactly the log (the demo agent hides none).
        assert await page.shown_ids() == await stored_ids(http, conversation_id)

        # The list row, kept up to date by polling: status, title, cost.
        await page.wait(
            "(s) => document.querySelector(s)?.dataset.status === 'STOPPED'", row(conversation_id)
        )
        assert await page.text(f"{row(conversation_id)} .title") == "look around"
        assert await page.text(f"{row(conversation_id)} .cost") == "cost 0.00 USD"

        # A follow-up, sent from the keyboard, starts a short second run.
        await page.fill("#message-input", "and now?")
        await page.do("press", selector="#message-input", key="Control+Enter")
        await page.wait_count("[data-agent-state=finished]", 2)
        assert await page.prop("#message-input", "value") == ""
        said = await page.texts("#events [data-source=user] .message")
        assert said == ["look around", "and now?"]
        assert await page.data(PLAN, "status") == ["done"]
        assert await page.shown_ids() == await stored_ids(http, conversation_id)
        assert await page.errors() == []


async def test_reload_and_a_network_drop_show_every_event_once(
    paced_server: RunningServer, http: httpx.AsyncClient
) -> None:
    conversation_id = await create(http, initial_user_msg="reload me", max_iterations=4)
    resume = f"/api/conversations/{conversation_id}/resume"
    async with relay_to(paced_server.port) as relay, open_page() as page:
        await page.goto(f"{relay.url}/#/c/{conversation_id}")
        await wait_iterations(page, "4 of 4")
        assert await page.text("#agent-state") == "error"  # held by its limit
        before = await page.shown_ids()

        # Reload while the run goes on to its next hold.
        assert (await http.post(resume)).status_code == 200
        await page.do("reload")
        await wait_iterations(page, "8 of 8")
        after = await page.shown_ids()
        assert after[: len(before)] == before
        assert after == await stored_ids(http, conversation_id)  # all of it, once each

        # The network drops; the run goes on to its next hold while the page is offline.
        relay.hold()
        assert relay.cut() >= 1
        await page.wait("() => document.querySelector('#connection').dataset.state !== 'open'")
        assert (await http.post(resume)).status_code == 200
        missed = await follow(paced_server, conversation_id, after=after[-1], until=agent_held)
        relay.release()
        await wait_iterations(page, "12 of 12")
        assert await page.shown_ids() == after + [event["id"] for event in missed]
        assert await page.prop("#connection", "textContent") == "live"
        assert await page.data("#connection", "opens") == ["2"]  # the reload's, then one resume

        # On to the end, resumed from the page.
        await page.click("#resume")
        await wait_state(page, "finished")
        await shows_every_stored_event(page, http, conversation_id)
        assert await page.errors(allow=EXPECTED_NOISE) == []


def _trajectory() -> list[dict[str, object]]:
    """A recorded session with every kind the page renders, a hidden event (id 8), and
    markup in a message, which must show as text."""
    plan = [
        {"id": "1", "title": "Reproduce", "status": "done"},
        {"id": "2", "title": "Fix slugify()", "status": "in_progress"},
    ]
    diff = (
        "--- slugkit/core.py\n+++ slugkit/core.py\n@@ -6 +6 @@\n"
        "-    return re.sub(r'\\s', '-', text)\n+    return re.sub(r'\\s+', '-', text)"
    )
    agent = {"source": "agent"}
    return [
        {"source": "user", "action": "message", "args": {"content": "fix <img src=x> please"}},
        {**agent, "action": "task_tracking", "args": {"command": "plan", "task_list": plan}},
        {
            **agent,
            "observation": "task_tracking",
            "content": "Task list has been updated with 2 items.",
            "extras": {"command": "plan", "task_list": plan},
        },
        {**agent, "action": "think", "args": {"thought": "Runs of spaces need a plus."}},
        {**agent, "action": "run", "args": {"command": "pytest -q tests/test_slugify.py"}},
        {
            **agent,
            "observation": "run",
            "content": "1 failed, 1 passed",
            "extras": {"command": "pytest -q", "metadata": {"exit_code": 1}},
        },
        {**agent, "action": "edit", "args": {"path": "slugkit/core.py", "command": "str_replace"}},
        {
            **agent,
            "observation": "edit",
            "content": "The file slugkit/core.py has been edited.",
            "extras": {"path": "slugkit/core.py", "diff": diff},
        },
        {"source": "environment", "action": "run", "args": {"command": "setup", "hidden": True}},
        {**agent, "observation": "error", "content": "The sandbox went away."},
        {**agent, "action": "finish", "args": {"final_thought": "Fixed slugify()."}},
    ]


async def test_events_render_by_kind_and_history_search_finds_them(
    paced_server: RunningServer, http: httpx.AsyncClient
) -> None:
    conversation_id = await create(
        http,
        title="slugify fix (replayed)",
        replay_json=json.dumps(_trajectory()),
        replay_mode="view",
    )
    async with open_page() as page:
        await page.goto(f"{paced_server.url}/#/c/{conversation_id}")
        await page.wait_for(f"{EVENTS}[data-id='10']")
        assert await page.shown_ids() == [0, 1, 2, 3, 4, 5, 6, 7, 9, 10]  # 8 is hidden

        # Markup in server data is text, never elements.
        assert await page.text(f"{of_kind('action:message')} .text") == "fix <img src=x> please"
        assert await page.texts("#events img") == []
        assert await page.text(f"{of_kind('action:think')} .text") == "Runs of spaces need a plus."
        assert await page.text(f"{of_kind('observation:run')} .exit") == "exit code 1"
        assert await page.text(f"{of_kind('observation:error')} .text") == "The sandbox went away."
        assert await page.texts(".diff .del") == ["-    return re.sub(r'\\s', '-', text)\n"]
        assert await page.texts(".diff .add") == ["+    return re.sub(r'\\s+', '-', text)\n"]
        assert await page.data(PLAN, "status") == ["done", "in_progress"]

        # Within the conversation: commands, by the agent.
        await page.click("#history summary")
        await page.do("check", selector="#history-form input[value=run]")
        await page.do("select", selector="#history-form select[name=source]", value="agent")
        await page.click("#history-form button")
        await page.wait_text("#history .summary", "2 matching events")
        found = [int(i) for i in await page.data("#history .results li", "id")]
        expected = await stored_ids(
            http, conversation_id, include_types="run", source="agent", exclude_hidden="true"
        )
        assert found == expected == [4, 5]
        # A result leads to its event in the stream.
        await page.click("#history .results li:last-child a")
        await page.wait("() => document.activeElement?.dataset.id === '5'")

        # Across conversations (full-text); results are named by their conversation.
        await page.wait_for(row(conversation_id))
        await page.fill("#global-q", "slugify")
        await page.click("#global-search button")
        await page.wait_for("#global-results .results li")
        assert set(await page.texts("#global-results .where")) == {"slugify fix (replayed)"}
        assert await page.errors() == []


async def test_on_a_narrow_screen_one_column_at_a_time(
    paced_server: RunningServer, http: httpx.AsyncClient
) -> None:
    conversation_id = await create(http, initial_user_msg="on a phone", max_iterations=6)
    overflow = "() => document.documentElement.scrollWidth - window.innerWidth"
    shown = "(s) => getComputedStyle(document.querySelector(s)).display !== 'none'"
    async with open_page(width=390, height=844) as page:
        await page.goto(f"{paced_server.url}/#/")
        await page.wait_for(row(conversation_id))
        assert await page.eval(overflow) <= 0

        await page.click(f"{row(conversation_id)} a")
        await wait_iterations(page, "6 of 6")  # held by its limit: a run in progress
        assert not await page.eval(shown, "#sidebar")
        assert await page.eval(shown, ".back")
        # Opening a conversation moves the keyboard focus to it.
        assert await page.eval("() => document.activeElement.id") == "conversation-title"
        assert await page.eval(overflow) <= 0
        assert await page.errors() == []


async def test_with_keys_the_page_asks_for_one_and_then_works(fresh_server: RunningServer) -> None:
    key = make_key(fresh_server, "alice")
    fresh_server.start()
    async with httpx.AsyncClient(
        base_url=fresh_server.url, headers={"X-Session-API-Key": key}, timeout=20
    ) as alice:
        conversation_id = await create(alice, initial_user_msg="keyed")
        await follow(fresh_server, conversation_id, key=key)

        async with open_page() as page:
            # Both the REST calls and the stream are refused: the key field shows.
            await page.goto(f"{fresh_server.url}/#/c/{conversation_id}")
            await page.wait("() => !document.querySelector('#key-form').hidden")
            await page.wait_text("#connection", "needs an API key")
            await page.fill("#key-input", "tl_wrong")
            await page.click("#key-form button")
            await page.wait_text("#key-error", "The server refused that key.")
            assert not await page.prop("#key-form", "hidden")

            await page.fill("#key-input", key)
            await page.click("#key-form button")
            await wait_state(page, "finished")
            await shows_every_stored_event(page, alice, conversation_id)
            await page.wait_for(row(conversation_id))

            # The key lasts as long as the tab: a reload needs no new one.
            await page.do("reload")
            await wait_state(page, "finished")
            assert await page.prop("#key-form", "hidden")
            assert await page.errors(allow=EXPECTED_NOISE) == []


async def test_a_queued_conversation_shows_its_place_and_stop_frees_it(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env = {**FAST, "THREADLINE_MAX_RUNNING": "1"}
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as http:
        # The first holds the only slot (held by its limit, a run still counts).
        first = await create(http, initial_user_msg="first", max_iterations=2)
        await follow(fresh_server, first, until=agent_held)
        second = await create(http, initial_user_msg="second")
        async with open_page() as page:
            await page.goto(f"{fresh_server.url}/#/c/{second}")
            await page.wait_text("#queue-position", "position 1")
            await page.wait_text(f"{row(second)} .status", "QUEUED #1")
            assert await page.prop("#pause", "disabled")

            # Stop the first from its own view; the second gets the slot and runs.
            await page.click(f"{row(first)} a")
            await wait_state(page, "error")
            await page.click("#stop")
            await wait_state(page, "stopped")
            await page.click(f"{row(second)} a")
            await wait_state(page, "finished")
            assert await page.prop("#queue", "hidden")
            assert await page.shown_ids() == await stored_ids(http, second)
            assert await page.errors() == []
