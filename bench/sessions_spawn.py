"""`bench/sessions.py` (a), beside the fleet: what one demo command (`DEMO_COMMANDS`)
costs on this machine when nothing else runs (``asyncio.create_subprocess_exec`` with a
new session, as the local runtime starts them): wall time, and CPU in the parent and in
the children.
"""

from __future__ import annotations

import asyncio
import os
import resource
import statistics
import tempfile
import time
from pathlib import Path

from bench.common import Metrics
from bench.sessions_fleet import DEMO_COMMANDS
from bench.sessions_server import path_without_shims

SPAWNED = (
    *((command, command, False) for command in DEMO_COMMANDS),
    (f"{DEMO_COMMANDS[1]}  [PATH without pyenv shims]", DEMO_COMMANDS[1], True),
)
"""(label, command, without shims) of the spawn-cost rows."""


async def _spawn(command: str, cwd: Path, env: dict[str, str], repeats: int) -> list[float]:
    """Wall ms of each of ``repeats`` runs of ``command``, one after another."""
    walls = []
    for _ in range(repeats):
        started = time.perf_counter()
        process = await asyncio.create_subprocess_exec(
            "/bin/sh", "-c", command,
            cwd=cwd, env=env, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT, start_new_session=True,
        )  # fmt: skip
        await process.communicate()
        walls.append((time.perf_counter() - started) * 1000)
    return walls


def spawn_cost(repeats: int) -> Metrics:
    """Per row of `SPAWNED`, ``repeats`` runs one after another from this process: wall
    ms (median), parent CPU ms and children CPU ms (means)."""
    found: Metrics = {}
    with tempfile.TemporaryDirectory() as scratch:
        workspace = Path(scratch)
        (workspace / "REPORT.md").write_text("# Report\n\nnothing to see\n")
        for index, (_, command, no_shims) in enumerate(SPAWNED):
            env = {**os.environ, **({"PATH": path_without_shims()} if no_shims else {})}
            own = resource.getrusage(resource.RUSAGE_SELF)
            children = resource.getrusage(resource.RUSAGE_CHILDREN)
            walls = asyncio.run(_spawn(command, workspace, env, repeats))
            own_after = resource.getrusage(resource.RUSAGE_SELF)
            children_after = resource.getrusage(resource.RUSAGE_CHILDREN)
            found[f"spawn.{index}.wall_ms"] = statistics.median(walls)
            found[f"spawn.{index}.parent_cpu_ms"] = _cpu_ms(own, own_after) / repeats
            found[f"spawn.{index}.children_cpu_ms"] = _cpu_ms(children, children_after) / repeats
    return found


def _cpu_ms(before: resource.struct_rusage, after: resource.struct_rusage) -> float:
    return (after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime) * 1000
