"""The page's replay bar (server/static/replay.js) in Debian's chromium against a real
server: a finished conversation plays "as it happened", pauses, scrubs, speeds up and
ends with everything shown. The recording's events are 30 s apart (cut to 5 s by the
page's max_gap), so what is hidden while paused or at speed 1 does not depend on timing.

Screenshots go to a temporary directory; ``THREADLINE_SCREENSHOTS=docs/screenshots``
refreshes the one in the docs."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest

from tests.server.browser import Page, open_page
from tests.server.running import RunningServer

BEGIN = datetime(2025, 3, 1, 10, 0, tzinfo=UTC)
THOUGHTS = ["read the issue", "find the slug code", "write the fix", "run the tests"]


def _recording() -> list[dict[str, object]]:
    def at(step: int) -> str:
        return (BEGIN + timedelta(seconds=30 * step)).isoformat()

    events: list[dict[str, object]] = [
        {"action": "message", "source": "user", "timestamp": at(0),
         "args": {"content": "Fix the slug of titles with accents"}},
    ]  # fmt: skip
    for step, thought in enumerate(THOUGHTS, start=1):
        events.append(
            {"action": "think", "source": "agent", "timestamp": at(step),
             "args": {"thought": thought}}
        )  # fmt: skip
    events.append(
        {"action": "run", "source": "agent", "timestamp": at(5),
         "args": {"command": "python -m pytest -q tests/test_slug.py"}}
    )  # fmt: skip
    events.append(
        {"observation": "run", "source": "agent", "timestamp": at(6), "cause": 5,
         "content": "3 passed in 0.02s",
         "extras": {"command": "python -m pytest -q tests/test_slug.py",
                    "metadata": {"exit_code": 0}}}
    )  # fmt: skip
    events.append(
        {"action": "finish", "source": "agent", "timestamp": at(7),
         "args": {"final_thought": "Accents are folded before slugging; tests pass."}}
    )  # fmt: skip
    return events


LAST = len(_recording()) - 1


async def visible_ids(page: Page) -> list[int]:
    return await page.eval(  # type: ignore[no-any-return]
        """() => [...document.querySelectorAll('#events > li')]
            .filter((li) => li.style.display !== 'none')
            .map((li) => Number(li.dataset.id))"""
    )


@pytest.fixture
def shots(tmp_path: Path) -> Path:
    configured = os.environ.get("THREADLINE_SCREENSHOTS")
    return Path(configured).resolve() if configured else tmp_path / "screenshots"


async def test_the_replay_bar_plays_pauses_scrubs_and_ends(tmp_path: Path, shots: Path) -> None:
    server = RunningServer(tmp_path / "server", env={"THREADLINE_DEMO_PACE": "0"}).start()
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=20) as http:
            imported = await http.post(
                "/api/conversations/import", json=_recording(), params={"title": "slug fix"}
            )
            conversation_id = imported.json()["conversation_id"]
        async with open_page() as page:
            await page.goto(f"{server.url}/#/c/{conversation_id}")
            await page.wait_for(f"#events > li[data-id='{LAST}']")
            await page.wait_for("#replay-bar:not([hidden])")
            assert await page.text("#replay-position") == f"event {LAST} of {LAST}"
            await page.do("select", selector="#replay-speed", value="1")
            await page.click("#replay-play")
            # At speed 1 the next event is 5 s away: only the first is shown.
            await page.wait("() => document.querySelector('#replay-play').textContent === 'Pause'")
            await page.wait(
                "() => document.querySelector('#replay-position').textContent === 'event 0 of 7'"
            )
            assert await visible_ids(page) == [0]
            await page.click("#replay-play")
            await page.wait_text("#replay-play", "Resume")
            await page.eval(
                """() => { const s = document.querySelector('#replay-scrubber');
                    s.value = '4'; s.dispatchEvent(new Event('change')); }"""
            )
            assert await visible_ids(page) == [0, 1, 2, 3, 4]
            assert await page.text("#replay-position") == f"event 4 of {LAST}"
            await page.screenshot(shots / "replay.png")
            await page.do("select", selector="#replay-speed", value="64")
            await page.click("#replay-play")
            await page.wait("() => document.querySelector('#replay-bar').dataset.state === 'ended'")
            assert await visible_ids(page) == list(range(LAST + 1))
            assert await page.text("#replay-play") == "Replay"
            assert await page.errors() == []
    finally:
        server.stop()


@pytest.fixture(autouse=True)
def _chromium() -> None:
    if not Path("/usr/bin/chromium").exists():
        raise RuntimeError("Debian's chromium is needed (apt-get install chromium)")
