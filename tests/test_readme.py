"""The README works verbatim: its shell and Python blocks run, in order, in one shell,
in a copy of this repository with a fresh virtual environment (made by the README's own
first block), against the server that block starts.

Only the port changes (``:3000`` becomes a free one) and the demo agent is brisker; a
block may be left out only with a reason, in ``<!-- not run by tests/test_readme.py:
why -->`` just above it. Blocks share the shell, so a variable one block sets (``$id``)
is there for the next, as it would be for a person typing them.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.reachable import reachable
from tests.server.running import free_port

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
FENCE = re.compile(
    r"(?:<!-- not run by tests/test_readme\.py: (?P<why>[^>]*?) -->\n)?"
    r"```(?P<language>sh|python)\n(?P<body>.*?)```",
    re.DOTALL,
)
SKIPPABLE = (
    "scripts/test", "scripts/fuzz", "scripts/chaos", "bench/", "sandbox build", "--database",
    "THREADLINE_DATABASE=",
)  # fmt: skip
"""What a block may be left out for: the suite itself, the long harnesses, Docker, and a
PostgreSQL the reader runs (tests/server/test_cluster.py and test_workers.py run those)."""


@dataclass(frozen=True)
class Block:
    language: str
    body: str
    why_not: str | None


def readme_blocks() -> list[Block]:
    return [
        Block(match["language"], match["body"], match["why"])
        for match in FENCE.finditer(README.read_text())
    ]


def shell_script(blocks: list[Block], port: int) -> str:
    """The blocks as one bash script; ``threadline serve`` goes to the background and
    the script waits until the server is ready."""
    lines = ["set -euo pipefail", "trap 'kill $(jobs -p) 2>/dev/null || true' EXIT"]
    for number, block in enumerate(blocks):
        body = block.body.replace(":3000", f":{port}")
        lines.append(f"echo '--- README block {number} ({block.language})' >&2")
        if block.language == "python":
            lines.append(f"python - <<'PYTHON'\n{body}PYTHON")
            continue
        for line in body.splitlines():
            if line.strip().startswith("threadline serve"):
                lines.append(f"{line.strip()} > serve.log 2>&1 &")
                lines.append(
                    f"for _ in $(seq 300); do curl -sf localhost:{port}/readyz >/dev/null "
                    f"&& break; sleep 0.1; done; curl -sf localhost:{port}/readyz"
                )
            else:
                lines.append(line)
    return "\n".join(lines) + "\n"


def copy_of_the_repository(destination: Path) -> Path:
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT, capture_output=True, check=True,
    ).stdout.decode().split("\0")  # fmt: skip
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            target = destination / name
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)
    return destination


def clean_environment(port: int) -> dict[str, str]:
    """This machine's environment without the test run's virtual environment."""
    environment = {
        name: value
        for name, value in os.environ.items()
        if not name.startswith(("THREADLINE_", "VIRTUAL_ENV", "PYTHON"))
    }
    venv_bin = str(Path(sys.executable).parent)
    path = [part for part in environment.get("PATH", "").split(os.pathsep) if part != venv_bin]
    environment["PATH"] = os.pathsep.join(path)
    environment.update({"THREADLINE_PORT": str(port), "THREADLINE_DEMO_PACE": "0.05"})
    return environment


def test_blocks_left_out_say_why_and_are_only_the_long_ones() -> None:
    blocks = readme_blocks()
    assert len([block for block in blocks if block.why_not is None]) >= 8
    for block in blocks:
        if block.why_not is not None:
            assert block.why_not.strip(), block.body
            assert any(command in block.body for command in SKIPPABLE), block.body


@pytest.mark.timeout(300)
def test_the_readme_runs_verbatim_on_a_fresh_virtual_environment(tmp_path: Path) -> None:
    if shutil.which("curl") is None:
        pytest.fail("the README uses curl: apt-get install curl")
    port = free_port()
    work = copy_of_the_repository(tmp_path / "threadline")
    reachable(work)  # sandbox users (the server runs as root here) walk down to workspaces
    blocks = [block for block in readme_blocks() if block.why_not is None]
    script = work / "readme.sh"
    script.write_text(shell_script(blocks, port))
    result = subprocess.run(
        ["bash", str(script)], cwd=work, env=clean_environment(port),
        capture_output=True, text=True, timeout=280, check=False,
    )  # fmt: skip
    server_log = (work / "serve.log").read_text() if (work / "serve.log").exists() else ""
    assert result.returncode == 0, (
        f"stdout:\n{result.stdout[-4000:]}\nstderr:\n{_without_pip_noise(result.stderr)[-4000:]}\n"
        f"server:\n{server_log[-3000:]}"
    )
    out = result.stdout
    # What the blocks show, in order: the live stream ending with the run, the CLI, the
    # client library, the operator's endpoints, recordings, keys, the storage example.
    assert "event: end" in out
    assert "agent_state_changed  finished" in out  # threadline tail and the client, pretty
    assert "404 not_found conversation 'no-such-conversation' not found" in out
    assert '"status":"ready"' in out
    assert "threadline_events_appended_total" in out
    assert re.search(r"^tl_", (work / "readme.sh").read_text(), re.M) is None
    assert "[0]" in out
    assert (work / "session.json").exists()
    assert (work / ".venv" / "bin" / "threadline").exists()
    assert "Traceback" not in result.stderr + server_log


def _without_pip_noise(text: str) -> str:
    return "\n".join(line for line in text.splitlines() if "is ignored: it is neither" not in line)
