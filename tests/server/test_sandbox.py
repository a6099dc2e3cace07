"""The sandbox boundary seen through a real server: what a conversation may name as its
repository and branch, what its commands can see, and what deleting it leaves."""

from __future__ import annotations

import os
from pathlib import Path

import httpx
import pytest

from tests.fakes.model_server import ScriptedModel, serving, tool
from tests.server.clients import agent_state, create, follow
from tests.server.running import RunningServer
from tests.server.test_auth import make_key

FAST = {"THREADLINE_DEMO_PACE": "0"}


@pytest.mark.parametrize(
    ("field", "body"),
    [
        ("selected_branch", {"selected_branch": "--pathspec-from-file=/etc/hostname"}),
        ("selected_branch", {"selected_branch": "-b"}),
        ("selected_branch", {"selected_branch": "main..other"}),
        ("selected_branch", {"selected_branch": "feature branch"}),
        ("repository", {"repository": "/etc"}),
        ("repository", {"repository": "file:///etc"}),
        ("repository", {"repository": "ext::sh -c touch% /tmp/owned"}),
        ("repository", {"repository": "--upload-pack=touch /tmp/owned"}),
        ("repository", {"repository": "../../etc"}),
        ("git_provider", {"repository": "acme/widgets", "git_provider": "sourceforge"}),
    ],
)
async def test_create_refuses_what_git_must_never_see(
    client: httpx.AsyncClient, field: str, body: dict[str, str]
) -> None:
    response = await client.post("/api/conversations", json={"initial_user_msg": "hi", **body})
    assert response.status_code == 400, response.text
    assert response.json()["field"] == field


@pytest.mark.parametrize(
    "body",
    [
        {"repository": "acme/widgets", "git_provider": "github", "selected_branch": "main"},
        {"repository": "acme/widgets", "git_provider": "gitlab"},
        {"repository": "https://example.com/acme/widgets.git", "selected_branch": "feat/x-1"},
        {"repository": "git@example.com:acme/widgets.git"},
        {"repository": "ssh://git@example.com/acme/widgets.git"},
    ],
)
async def test_create_accepts_remote_repositories(
    client: httpx.AsyncClient, body: dict[str, str]
) -> None:
    response = await client.post("/api/conversations", json=body)
    assert response.status_code == 201, response.text


async def test_commands_see_no_server_secret_and_no_other_data(tmp_path: Path) -> None:
    server_dir = tmp_path / "server"
    model = ScriptedModel(
        [
            tool(
                "execute_bash",
                command=(
                    f"env; echo uid=$(id -u); ls {server_dir / 'log'}; "
                    f"cat {server_dir / 'log'}/* | head -c 64 | wc -c"
                ),
            ),
            tool("finish", message="done"),
        ]
    )
    async with serving(model) as base_url:
        server = RunningServer(
            server_dir,
            env={
                **FAST,
                "THREADLINE_LLM_BASE_URL": base_url,
                "THREADLINE_LLM_API_KEY": "sk-operator-secret",
            },
        ).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
                conversation_id = await create(http, initial_user_msg="look", agent="llm")
                events = await follow(server, conversation_id)
        finally:
            server.stop()
    assert agent_state(events[-1]) == "finished", events[-1]["extras"]
    seen = next(e for e in events if e.get("observation") == "run")["content"]
    assert "sk-operator-secret" not in seen
    assert "THREADLINE_" not in seen
    if os.geteuid() == 0:
        assert "uid=0" not in seen
        assert "Permission denied" in seen
        assert seen.strip().endswith("0")  # not one byte of the database


async def test_deleting_a_conversation_removes_its_workspace(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "server", env=FAST).start()
    workspace = server.data_dir / "workspaces" / "reused-id"
    try:
        async with httpx.AsyncClient(base_url=server.url, timeout=30) as http:
            body = {"conversation_id": "reused-id", "initial_user_msg": "report"}
            await create(http, **body)
            first = await follow(server, "reused-id")
            assert agent_state(first[-1]) == "finished"
            assert (workspace / "REPORT.md").exists()

            assert (await http.delete("/api/conversations/reused-id")).status_code == 200
            assert not workspace.exists()

            await create(http, **body)
            second = await follow(server, "reused-id")
            listing = next(e for e in second if e.get("observation") == "run")["content"]
            assert "REPORT.md" not in listing
    finally:
        server.stop()


async def test_keys_refuse_the_local_runtime_unless_the_operator_accepts_it(
    tmp_path: Path,
) -> None:
    """Accepted with THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS=1: every other test with
    keys runs so (tests/server/running.py ACCEPT_LOCAL_WITH_KEYS)."""
    refusing = RunningServer(tmp_path / "refusing", env=FAST)
    key = make_key(refusing, "alice")
    refusing.start()
    try:
        async with httpx.AsyncClient(
            base_url=refusing.url, headers={"X-Session-API-Key": key}
        ) as http:
            response = await http.post("/api/conversations", json={"initial_user_msg": "hi"})
            assert response.status_code == 403, response.text
            assert "THREADLINE_ALLOW_LOCAL_RUNTIME_WITH_KEYS" in response.json()["message"]
            assert (await http.get("/api/conversations")).json()["results"] == []
    finally:
        refusing.stop()
