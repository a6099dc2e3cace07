"""Record the generated part of tests/fixtures/trajectories: a demo-agent run and an
LLM-agent run (against tests/fakes/model_server.py), each exported from a real server
with its hidden events. Run by ``scripts/record-trajectories``; the tests only read the
files it wrote."""

from __future__ import annotations

import asyncio
import sys
import tempfile
from pathlib import Path

import httpx
import orjson

from tests.fakes.model_server import ScriptedModel, say, serving, tool
from tests.server.clients import create, ended, follow
from tests.server.running import RunningServer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "trajectories"

MODEL_SCRIPT = [
    tool(
        "task_tracker",
        command="plan",
        task_list=[
            {"id": "1", "title": "Write the greeting", "status": "in_progress"},
            {"id": "2", "title": "Check it", "status": "todo"},
        ],
    ),
    tool("execute_bash", command="printf 'hello, world\\n' > greeting.txt && cat greeting.txt"),
    tool(
        "str_replace_editor",
        command="str_replace",
        path="greeting.txt",
        old_str="hello",
        new_str="goodbye",
    ),
    tool("str_replace_editor", command="view", path="greeting.txt"),
    tool("think", thought="The file says goodbye now; one more check and I am done."),
    tool("execute_bash", command="grep -c goodbye greeting.txt"),
    tool(
        "task_tracker",
        command="plan",
        task_list=[
            {"id": "1", "title": "Write the greeting", "status": "done"},
            {"id": "2", "title": "Check it", "status": "done"},
        ],
    ),
    say("I wrote greeting.txt and changed hello to goodbye. Anything else?"),
    tool("finish", message="Done: greeting.txt says goodbye."),
]


async def record(directory: Path) -> list[Path]:
    model = ScriptedModel(MODEL_SCRIPT)
    written: list[Path] = []
    async with serving(model) as base_url:
        server = RunningServer(
            directory / "server",
            env={
                "THREADLINE_DEMO_PACE": "0.02",
                "THREADLINE_LLM_BASE_URL": base_url,
                "THREADLINE_LLM_INPUT_COST": "1.0",
                "THREADLINE_LLM_OUTPUT_COST": "2.0",
            },
        ).start()
        try:
            async with httpx.AsyncClient(base_url=server.url, timeout=60) as client:
                demo = await create(client, initial_user_msg="look around and report")
                events = await follow(server, demo)
                await client.post(
                    f"/api/conversations/{demo}/message", json={"message": "what did you find?"}
                )
                await follow(server, demo, after=events[-1]["id"])
                written.append(await _export(client, demo, "threadline_demo.json"))

                llm = await create(client, initial_user_msg="write a greeting file", agent="llm")
                events = await follow(
                    server, llm, until=lambda e: e.get("action") == "message" and e["id"] > 1
                )
                await client.post(
                    f"/api/conversations/{llm}/message", json={"message": "no, that is all"}
                )
                await follow(server, llm, after=events[-1]["id"], until=ended)
                written.append(await _export(client, llm, "threadline_llm.json"))
        finally:
            server.stop()
    return written


async def _export(client: httpx.AsyncClient, conversation_id: str, name: str) -> Path:
    response = await client.get(
        f"/api/conversations/{conversation_id}/trajectory", params={"include_hidden": "true"}
    )
    response.raise_for_status()
    path = FIXTURES / name
    path.write_bytes(orjson.dumps(response.json(), option=orjson.OPT_INDENT_2) + b"\n")
    return path


def main() -> int:
    with tempfile.TemporaryDirectory() as directory:
        for path in asyncio.run(record(Path(directory))):
            print(f"wrote {path.relative_to(Path.cwd())}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
