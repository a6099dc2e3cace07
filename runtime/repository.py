"""Preparing a workspace: clone the repository, check out the branch, run the setup
script. Each step is reported through the status callback; a failing step raises
`RuntimeFailure` naming it, with the tail of what it printed."""

from __future__ import annotations

import asyncio
from pathlib import Path

from runtime.errors import RuntimeFailure
from runtime.protocol import StatusCallback

GIT_TIMEOUT = 300.0
DEFAULT_SETUP_SCRIPT = ".openhands/setup.sh"


async def prepare_checkout(
    workspace: Path,
    *,
    repository: str | None,
    branch: str | None,
    status: StatusCallback,
) -> None:
    """Clone ``repository`` into the workspace (unless a checkout is already there) and
    check out ``branch``. Runs git on the host; the sandbox sees the workspace."""
    await asyncio.to_thread(workspace.mkdir, parents=True, exist_ok=True)
    if repository is None:
        return
    if (workspace / ".git").exists():
        await status(f"reusing the checkout of {repository} in the workspace")
    else:
        await status(f"cloning {repository}")
        await _git(workspace, "clone", "--quiet", "--", repository, ".")
    if branch:
        await status(f"checking out {branch}")
        await _git(workspace, "checkout", "--quiet", branch)


def setup_script_path(workspace: Path, setup_script: str | None) -> str | None:
    """The setup script to run: the one asked for, or the repository's own if present."""
    if setup_script:
        return setup_script
    return DEFAULT_SETUP_SCRIPT if (workspace / DEFAULT_SETUP_SCRIPT).is_file() else None


async def _git(workspace: Path, *arguments: str) -> None:
    process = await asyncio.create_subprocess_exec(
        "git", *arguments,
        cwd=workspace,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={"GIT_TERMINAL_PROMPT": "0", "PATH": "/usr/local/bin:/usr/bin:/bin"},
    )  # fmt: skip
    try:
        async with asyncio.timeout(GIT_TIMEOUT):
            output, _ = await process.communicate()
    except BaseException:
        process.kill()
        await process.wait()
        raise
    if process.returncode != 0:
        tail = output.decode(errors="replace").strip()[-500:]
        raise RuntimeFailure(f"git {arguments[0]} failed (exit {process.returncode}): {tail}")
