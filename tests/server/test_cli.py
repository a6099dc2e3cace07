"""The ``threadline`` command for people: one-line errors, real defaults in every
``--help``, ``keys`` taking ``--data-dir`` anywhere, and ``ls`` / ``send`` / ``tail``
against a real server (``tail`` across a kill -9 of it)."""

from __future__ import annotations

import asyncio
import json
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from client import AsyncThreadline, Threadline
from server.settings import Settings
from tests.server.running import REPOSITORY, RunningServer

COMMANDS = [
    [], ["serve"], ["keys"], ["keys", "create"], ["keys", "list"], ["keys", "revoke"],
    ["ls"], ["tail"], ["send"], ["export"], ["import"], ["sandbox"], ["sandbox", "build"],
]  # fmt: skip


def threadline(*arguments: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "server.cli", *arguments],
        cwd=REPOSITORY, capture_output=True, text=True, timeout=timeout, check=False,
    )  # fmt: skip


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    assert result.returncode != 0
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "threadline")
def test_every_help_shows_real_defaults(command: list[str]) -> None:
    result = threadline(*command, "--help")
    assert result.returncode == 0, result.stderr
    for raw in ("default None", "default: None", "default ()", "default: ()", "default: False"):
        assert raw not in result.stdout, result.stdout


def test_serve_help_lists_every_setting_with_its_default() -> None:
    shown = " ".join(threadline("serve", "--help").stdout.split())
    for variable, default, _ in Settings.documented():
        assert f"${variable}; default: {default})" in shown, variable


def test_keys_take_the_data_dir_anywhere_and_errors_are_one_line(tmp_path: Path) -> None:
    data = str(tmp_path / "data")
    made = threadline("keys", "create", "--data-dir", data, "--user", "alice")
    assert made.returncode == 0, made.stderr
    assert made.stdout.startswith("tl_")
    listed = threadline("keys", "--data-dir", data, "list")
    assert listed.stdout.split("\t")[:3] == ["1", "alice", "active"]
    assert threadline("keys", "revoke", "1", "--data-dir", data).returncode == 0

    assert one_line_error(threadline("keys", "revoke", "99", "--data-dir", data)) == (
        "threadline keys: there is no API key 99"
    )
    nowhere = one_line_error(threadline("ls", "--url", "http://127.0.0.1:9"))
    assert nowhere.startswith("threadline ls: cannot reach http://127.0.0.1:9")
    assert "see --url" in nowhere


def test_a_bad_redis_url_is_one_line_without_its_password() -> None:
    refused = one_line_error(threadline("serve", "--redis", "redis://:hunter2@127.0.0.1:99999"))
    assert refused == (
        "threadline serve: redis must be a URL like redis://127.0.0.1:6379/0 "
        "(or rediss://..., unix:///path/to/socket), not 'redis://:***@127.0.0.1:99999'"
    )


def test_ls_send_and_one_line_refusals(server: RunningServer) -> None:
    url = ("--url", server.url)
    made = threadline("import", "-", *url, "--title", "for ls")
    assert made.returncode != 0  # stdin is empty: the server says why, in one line
    assert "the server answered 400" in one_line_error(made)

    with Threadline(server.url) as api:
        conversation = api.create(title="listed").id
    listed = threadline("ls", *url)
    assert listed.returncode == 0, listed.stderr
    header, *rows = listed.stdout.splitlines()
    assert header.split()[:5] == ["ID", "STATUS", "STATE", "STEPS", "COST"]
    row = next(line for line in rows if line.startswith(conversation))
    assert "0.00 USD" in row
    assert row.endswith("listed")
    as_json = [json.loads(line) for line in threadline("ls", *url, "--json").stdout.splitlines()]
    assert conversation in [item["conversation_id"] for item in as_json]

    sent = threadline("send", conversation, "hello there", *url)
    assert (sent.returncode, sent.stdout) == (0, "0\n")
    refused = one_line_error(threadline("send", "no-such-conversation", "hi", *url))
    assert refused == (
        "threadline send: the server answered 404: conversation 'no-such-conversation' not found"
    )


async def test_tail_follows_live_across_a_kill_and_exits_when_the_run_ends(
    fresh_server: RunningServer,
) -> None:
    fresh_server.env["THREADLINE_DEMO_PACE"] = "0.1"
    fresh_server.start()
    async with AsyncThreadline(fresh_server.url) as api:
        conversation = await api.create("look around")
        tail = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "server.cli", "tail", conversation.id, "--url", fresh_server.url,
            cwd=REPOSITORY, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )  # fmt: skip
        assert tail.stdout is not None
        lines: list[str] = []
        async with asyncio.timeout(60):
            while len(lines) < 4:
                lines.append((await tail.stdout.readline()).decode().rstrip("\n"))
            fresh_server.stop(signal.SIGKILL)
            await asyncio.to_thread(fresh_server.start)
            await api.send(conversation.id, "and now?")
            while "finished" not in lines[-1] or len(lines) < 10:
                lines.append((await tail.stdout.readline()).decode().rstrip("\n"))
        tail.send_signal(signal.SIGINT)
        _, stderr = await tail.communicate()
        assert tail.returncode == 130, stderr.decode()
        last = int(lines[-1].split()[0])
        assert f"threadline tail {conversation.id} --after {last}" in stderr.decode()
        ids = [int(line.split()[0]) for line in lines]
        assert ids == list(range(len(ids)))  # once each, in order, across the kill
        stored = [event async for event in api.events(conversation.id)]
        assert ids == [event["id"] for event in stored][: len(ids)]
        # Pretty by kind: a command, its output, a plan, the state.
        text = "\n".join(lines)
        assert "$ " in text
        assert "exit 0:" in text
        assert "[x]" in text
        assert "agent_state_changed  finished" in text

    # --json and --until-end: the whole conversation, then it exits on its own.
    result = await asyncio.to_thread(
        threadline, "tail", conversation.id, "--json", "--until-end", "--url", fresh_server.url
    )
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert [event["id"] for event in events] == [event["id"] for event in stored]
    assert events[-1]["extras"]["agent_state"] == "finished"
