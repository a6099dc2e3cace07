"""The clients in ``examples/`` against a real server: ``watch.py`` (python-socketio) as a
subprocess, and ``eventsource.html`` in a real browser (Debian's chromium driven by
playwright-core, ``tests/js/browse.mjs``)."""

from __future__ import annotations

import asyncio
import functools
import re
import sys
import threading
import tomllib
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import pytest
import yaml

from server.cli import _parser
from server.settings import Settings
from tests.server.clients import create
from tests.server.conftest import FAST
from tests.server.node import NodeScript, Record, node_script, of_type
from tests.server.running import REPOSITORY, RunningServer

EXAMPLES = REPOSITORY / "examples"
EVENT_LINE = re.compile(r"^\s*(\d+)\s+(\S+)\s+(\S+)\s*(.*)$")


async def run_watch(server: RunningServer, *arguments: str) -> tuple[int, list[str], str]:
    """``python examples/watch.py --url <server> <arguments>``: exit code, stdout lines
    and stderr."""
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        str(EXAMPLES / "watch.py"),
        "--url",
        server.url,
        *arguments,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        async with asyncio.timeout(60):
            stdout, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stdout.decode().splitlines(), stderr.decode()


def printed_ids(lines: list[str]) -> list[int]:
    ids = []
    for line in lines:
        match = EVENT_LINE.match(line)
        assert match, f"not an event line: {line!r}"
        ids.append(int(match[1]))
    return ids


async def test_watch_py_survives_a_drop_and_prints_every_event_once(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    code, lines, notes = await run_watch(
        server, "--message", "look around", "--drop-after", "5", "--transport", "socketio"
    )
    assert code == 0, notes
    ids = printed_ids(lines)
    assert ids == list(range(len(ids)))  # 0..N, in order, once each
    assert re.search(r"agent_state_changed\s+finished$", lines[-1])
    assert "dropping the connection after 5 events" in notes
    resumed = re.search(r"reconnecting with latest_event_id=(\d+)", notes)
    assert resumed is not None, notes
    assert 4 <= int(resumed[1]) < ids[-1]

    created = re.search(r"created conversation (\S+)", notes)
    assert created is not None, notes
    stored = await client.get(f"/api/conversations/{created[1]}/events", params={"limit": 100})
    assert [event["id"] for event in stored.json()["events"]] == ids


async def test_watch_py_on_an_existing_conversation(
    server: RunningServer, client: httpx.AsyncClient
) -> None:
    conversation_id = await create(client, initial_user_msg="look around")
    # A finished conversation: replayed up to its end, then the watcher exits.
    code, first, notes = await run_watch(server, "--conversation", conversation_id)
    assert code == 0, notes
    ids = printed_ids(first)
    assert ids == list(range(len(ids)))
    assert re.search(r"agent_state_changed\s+finished$", first[-1])

    # A follow-up sent as an oh_user_action: replay, then the new run to its end.
    code, second, notes = await run_watch(
        server, "--conversation", conversation_id, "--message", "and now?"
    )
    assert code == 0, notes
    assert f"sent the message as event {ids[-1] + 1}" in notes
    more = printed_ids(second)
    assert more == list(range(len(more)))
    assert more[-1] > ids[-1] + 1
    assert second[: len(first)] == first
    assert re.search(r"agent_state_changed\s+finished$", second[-1])

    code, lines, notes = await run_watch(server, "--conversation", "no-such-conversation")
    assert (code, lines) == (2, [])
    assert "conversation 'no-such-conversation' not found" in notes


# -- eventsource.html in a browser ---------------------------------------------------


class _QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def pages() -> Iterator[str]:
    """``examples/`` served over HTTP from an origin of its own (the way a page hosted
    elsewhere would use the server); yields that origin."""
    handler = functools.partial(_QuietHandler, directory=str(EXAMPLES))
    with ThreadingHTTPServer(("127.0.0.1", 0), handler) as httpd:
        thread = threading.Thread(target=httpd.serve_forever, name="examples-http", daemon=True)
        thread.start()
        yield f"http://127.0.0.1:{httpd.server_address[1]}"
        httpd.shutdown()
        thread.join()


@pytest.fixture
def cors_server(tmp_path: Path, pages: str) -> Iterator[RunningServer]:
    """A server of the test's own (it gets restarted) that lets the pages' origin in."""
    running = RunningServer(
        tmp_path / "server", env={**FAST, "THREADLINE_CORS_ORIGINS": pages}
    ).start()
    yield running
    running.stop()


async def test_eventsource_page_shows_every_event_once_across_a_server_restart(
    pages: str, cors_server: RunningServer
) -> None:
    async with httpx.AsyncClient(base_url=cors_server.url, timeout=20) as http:
        conversation_id = await create(http, initial_user_msg="from the browser")
    query = urlencode({"server": cors_server.url, "conversation": conversation_id})
    page = f"{pages}/eventsource.html?{query}"

    async with node_script(
        "browse.mjs", "--page", page, "--finishes", "2", needs="playwright-core"
    ) as browser:
        first = await next_of(browser, "finished")
        first_ids = first["ids"]
        assert first_ids == list(range(len(first_ids))), browser.records
        assert first["opens"] == 1

        # The server goes away and comes back: the page's EventSource reconnects on its
        # own, sending Last-Event-ID. A follow-up run then shows up after what it had.
        await asyncio.to_thread(cors_server.restart)
        async with httpx.AsyncClient(base_url=cors_server.url, timeout=20) as http:
            response = await http.post(
                f"/api/conversations/{conversation_id}/message", json={"message": "and now?"}
            )
            assert response.status_code == 200, response.text
            assert response.json()["event_id"] == first_ids[-1] + 1

            second = await next_of(browser, "finished")
            ids = second["ids"]
            assert ids == list(range(len(ids))), browser.records  # once each, in order
            assert ids[: len(first_ids)] == first_ids
            assert len(ids) > len(first_ids) + 1
            assert second["opens"] >= 2  # it did reconnect

            stored = await http.get(
                f"/api/conversations/{conversation_id}/events", params={"limit": 100}
            )
            assert [event["id"] for event in stored.json()["events"]] == ids
        code, records = await browser.finish()
    assert code == 0, records
    assert not of_type(records, "timeout")


async def next_of(browser: NodeScript, kind: str) -> Record:
    """The script's next record of ``kind`` (console lines are kept, not returned)."""
    while True:
        record: Record = await browser.next_record()
        if record["type"] == "timeout":
            pytest.fail(f"the page did not get there: {browser.records}")
        if record["type"] == kind:
            return record


def test_the_compose_file_and_image_use_settings_threadline_knows() -> None:
    """No registry is reachable here to build and run them: their settings and command
    are checked against the code instead, so a renamed setting or flag fails."""
    compose = yaml.safe_load((EXAMPLES / "compose.yaml").read_text())
    service = compose["services"]["threadline"]
    environment = {
        name: re.sub(r"\$\{[^}]*\}", "x", str(value))
        for name, value in service["environment"].items()
    }
    unknown = set(environment) - {n for n, _, _ in Settings.documented()}
    assert unknown == set()
    arguments = _parser().parse_args(service["command"])
    overrides = {
        name: getattr(arguments, name)
        for name in vars(arguments)
        if name not in ("command", "debug") and getattr(arguments, name) is not None
    }
    settings = Settings.from_env(environment, **overrides)
    assert settings.workers == 3
    assert settings.database is not None
    assert settings.database.startswith("postgresql://")

    dockerfile = (EXAMPLES / "Dockerfile").read_text()
    copied = set(re.findall(r"^COPY (\w+) \1$", dockerfile, re.M))
    project = tomllib.loads((REPOSITORY / "pyproject.toml").read_text())
    packages = set(project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"])
    assert copied == packages
