"""The OpenAPI document lists every status the server answers (issue 9, item 20): each
answer below comes from a real server and must be documented for its operation."""

from __future__ import annotations

import subprocess
import sys

import httpx

from tests.server.clients import create
from tests.server.openapi_check import undocumented
from tests.server.running import REPOSITORY, RunningServer


def create_key(data_dir: str, user: str) -> str:
    command = [sys.executable, "-m", "server.cli", "keys", "--data-dir", data_dir]
    result = subprocess.run(
        [*command, "create", "--user", user],
        cwd=REPOSITORY, capture_output=True, text=True, check=True,
    )  # fmt: skip
    return result.stdout.strip()


async def test_every_answer_is_documented(fresh_server: RunningServer) -> None:
    key = create_key(str(fresh_server.data_dir), "alice")
    fresh_server.env.update(
        {
            "THREADLINE_MAX_BODY_BYTES": "4096",
            "THREADLINE_RATE_LIMIT": "0.1",
            "THREADLINE_RATE_LIMIT_BURST": "40",
            "THREADLINE_MAX_RUNNING": "1",
            "THREADLINE_AT_CAP": "reject",
            "THREADLINE_DEMO_PACE": "5",
        }
    )
    fresh_server.start()
    async with httpx.AsyncClient(base_url=fresh_server.url, timeout=20) as anonymous:
        spec = (await anonymous.get("/openapi.json")).json()
        answers = [
            await anonymous.get("/api/conversations"),  # 401
            await anonymous.post("/api/conversations", json={}),  # 401
        ]
    headers = {"X-Session-API-Key": key}
    async with httpx.AsyncClient(base_url=fresh_server.url, headers=headers, timeout=20) as client:
        created = await client.post("/api/conversations", json={})  # 201
        answers.append(created)
        idle = created.json()["conversation_id"]
        running = await create(client, initial_user_msg="keep busy")
        base = f"/api/conversations/{idle}"
        answers += [
            await client.post("/api/conversations", json={"conversation_id": idle}),  # 409
            await client.post("/api/conversations", json={"title": "t" * 201}),  # 400
            await client.post(f"{base}/pause"),  # 409: not running
            await client.post(f"{base}/start"),  # 429: the running cap, policy reject
            await client.get("/api/conversations/missing"),  # 404
            await client.get("/api/conversations/missing/events"),  # 404
            await client.get(f"{base}/events", params={"start_id": 2**63}),  # 400
            await client.get(f"{base}/events/count", params={"end_date": "x"}),  # 400
            await client.get("/api/events/search"),  # 400
            await client.post(f"{base}/events", content=b"{" * 5000),  # 413
            await client.post(f"{base}/message", json={"message": "m" * 5000}),  # 413
            await client.patch(base, json={"title": "renamed"}),  # 200
            await client.get(f"/api/conversations/{running}/plan"),  # 200
            await client.post(f"/api/conversations/{running}/stop"),  # 200
            await client.get("/api/sessions"),  # 200
        ]
        while (answer := await client.get("/api/conversations")).status_code != 429:
            answers.append(answer)
        answers.append(answer)
    statuses = {answer.status_code for answer in answers}
    assert {200, 201, 400, 401, 404, 409, 413, 429} <= statuses, statuses
    missing = [line for answer in answers if (line := undocumented(spec, answer))]
    assert missing == []
