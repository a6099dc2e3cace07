"""Start tasks (reference 000) on a real server: the status walks the runtime's real
start phases, each a ``task_state`` event in the stream; READY names the conversation;
a start that fails is ERROR with its detail; the batch form answers null for ids it does
not know; 400, 401 and 403 as the document lists them."""

from __future__ import annotations

import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK, documented_client, follow_task
from tests.server.test_auth import make_key

PHASES = [
    "WORKING",
    "WAITING_FOR_SANDBOX",
    "PREPARING_REPOSITORY",
    "RUNNING_SETUP_SCRIPT",
    "SETTING_UP_GIT_HOOKS",
    "STARTING_CONVERSATION",
    "READY",
]


def ready_or_error(status: str) -> bool:
    return status in ("READY", "ERROR")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("starts"), env=QUICK).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async for http, _ in documented_client(server):
        yield http


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A bare repository with a setup script and a pre-commit script."""
    base = tmp_path_factory.mktemp("repository")
    source = base / "source"
    (source / ".openhands").mkdir(parents=True)
    (source / ".openhands" / "setup.sh").write_text("echo ran > setup-ran.txt\n")
    (source / ".openhands" / "pre-commit.sh").write_text("exit 0\n")
    git = ["git", "-c", "user.email=t@example.invalid", "-c", "user.name=t"]
    for command in (
        ["git", "init", "--quiet", "--initial-branch=main"],
        ["git", "add", "."],
        [*git, "commit", "--quiet", "-m", "start"],
    ):
        subprocess.run(command, cwd=source, check=True, capture_output=True)
    bare = base / "project.git"
    subprocess.run(["git", "clone", "--quiet", "--bare", str(source), str(bare)], check=True)
    return bare


def message(text: str) -> dict[str, object]:
    return {"role": "user", "content": [{"type": "text", "text": text}]}


async def test_the_status_walks_the_real_start_phases(
    client: httpx.AsyncClient, server: RunningServer, repository: Path
) -> None:
    response = await client.post(
        "/api/v1/app-conversations",
        json={
            "selected_repository": str(repository),
            "selected_branch": "main",
            "title": "Fix the login",
            "initial_message": message("fix the login"),
            "max_iterations": 50,
        },
    )
    assert response.status_code == 200
    task = response.json()
    assert set(task) == {
        "id", "created_by_user_id", "status", "detail", "app_conversation_id", "sandbox_id",
        "agent_server_url", "request", "created_at", "updated_at",
    }  # fmt: skip
    assert (task["status"], task["app_conversation_id"]) == ("WORKING", None)
    assert task["request"]["title"] == "Fix the login"
    assert await follow_task(server, task["id"], until=ready_or_error) == PHASES

    ready = (await client.get(f"/api/v1/app-conversations/start-tasks/{task['id']}")).json()
    assert ready["status"] == "READY"
    conversation_id = ready["app_conversation_id"]
    assert ready["agent_server_url"] == f"{server.url}/api/conversations/{conversation_id}"
    assert ready["sandbox_id"]
    info = (await client.get(f"/api/conversations/{conversation_id}")).json()
    assert (info["title"], info["max_iterations"]) == ("Fix the login", 50)
    workspace = server.data_dir / "workspaces" / conversation_id
    assert (workspace / "setup-ran.txt").read_text() == "ran\n"
    assert ".openhands/pre-commit.sh" in (workspace / ".git/hooks/pre-commit").read_text()

    batch = await client.get(
        "/api/v1/app-conversations/start-tasks", params=[("ids", task["id"]), ("ids", "nope")]
    )
    assert [entry and entry["status"] for entry in batch.json()] == ["READY", None]


async def test_a_failed_start_is_error_with_its_detail(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    not_a_repository = server.data_dir.parent / "empty-directory"
    not_a_repository.mkdir(exist_ok=True)
    response = await client.post(
        "/api/v1/app-conversations",
        json={"selected_repository": str(not_a_repository), "initial_message": message("hi")},
    )
    task_id = response.json()["id"]
    statuses = await follow_task(server, task_id, until=ready_or_error)
    assert statuses[-1] == "ERROR"
    assert "READY" not in statuses
    failed = (await client.get(f"/api/v1/app-conversations/start-tasks/{task_id}")).json()
    assert failed["detail"].startswith("the run ended before it was ready (error)")
    assert failed["app_conversation_id"] is None


async def test_bad_requests(client: httpx.AsyncClient) -> None:
    bad = {
        "git_provider": {"git_provider": "svn"},
        "initial_message.content.0.type": {
            "initial_message": {"role": "user", "content": [{"type": "image", "text": "x"}]}
        },
        "processors.0.type": {
            "processors": [{"type": "slack", "url": "https://x", "secret": "s" * 16}]
        },
        "selected_branch": {"selected_branch": "--upload-pack=evil"},
        "colour": {"colour": "red"},
        "agent": {"agent": "nobody"},
    }
    for field, body in bad.items():
        response = await client.post("/api/v1/app-conversations", json=body)
        assert response.status_code == 400, (field, response.text)
        assert response.json()["field"] == field
    assert (await client.get("/api/v1/app-conversations/start-tasks")).status_code == 400
    assert (await client.get("/api/v1/app-conversations/start-tasks/nope")).status_code == 404


async def test_401_and_403_with_keys(tmp_path: Path) -> None:
    """With keys on and the local runtime not accepted by the operator: 403."""
    server = RunningServer(tmp_path / "keys", env=QUICK)
    key = make_key(server, "alice")
    server.start()
    try:
        async for client, _ in documented_client(server):
            body = {"initial_message": message("hi")}
            assert (await client.post("/api/v1/app-conversations", json=body)).status_code == 401
            refused = await client.post(
                "/api/v1/app-conversations", json=body, headers={"X-Session-API-Key": key}
            )
            assert (refused.status_code, refused.json()["error"]) == (403, "local_runtime_refused")
    finally:
        server.stop()
