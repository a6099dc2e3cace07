"""Where a py-spy recording of `bench/sessions.py`'s server spent its samples: per thread,
per bucket of code (`FLEET_BUCKETS` for (a), `CONTROLLER_BUCKETS` for (b)), and the
functions most often on the stack; and those summaries as report lines.

Importable as ``bench.sessions_profile`` once the repository root is on ``sys.path``.
"""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path
from typing import Any

from bench.common import render

Buckets = list[tuple[str, tuple[str, ...]]]
"""(label, substrings): a sample belongs to the first bucket one of whose substrings
occurs in one of its frames (innermost frame first)."""


def summarise(path: Path, buckets: Buckets, top: int = 12) -> dict[str, object]:
    """Where the samples of a raw py-spy recording went: per thread, per bucket (each
    sample counted once, in the first bucket one of its frames matches), the functions
    most often on top of the stack, and the functions most often anywhere in it (below
    the trunk every sample shares: the `TRUNK` functions are left out)."""
    threads: Counter[str] = Counter()
    labelled: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, number = line.rpartition(" ")
        if not stack or not number.isdigit():
            continue
        samples = int(number)
        frames = stack.split(";")
        total += samples
        threads[_thread_name(frames[0])] += samples
        leaves[frames[-1]] += samples
        labelled[_bucket(frames, buckets)] += samples
        for function in {_function(frame) for frame in frames[1:]}:
            if function.partition(" (")[0] not in TRUNK:
                inclusive[function] += samples
    share = {label: count / total for label, count in labelled.most_common()} if total else {}
    return {
        "samples": total,
        "threads": {name: count / total for name, count in threads.most_common()},
        "buckets": share,
        "top_self": [(frame, count / total) for frame, count in leaves.most_common(top)],
        "top_inclusive": [
            (function, count / total) for function, count in inclusive.most_common(top)
        ],
    }


TRUNK = frozenset(
    {
        "_run_module_as_main", "_run_code", "<module>", "main", "serve", "Server.run",
        "asyncio_run", "Runner.run", "BaseEventLoop.run_until_complete",
        "BaseEventLoop.run_forever", "BaseEventLoop._run_once", "Handle._run",
        "Thread._bootstrap", "Thread._bootstrap_inner", "Thread.run",
    }
)  # fmt: skip
"""Functions every sample of a thread passes through: the server's start and the event
loop running a callback, or a thread starting."""


def _function(frame: str) -> str:
    """``name (path/file.py:123)`` -> ``name (path/file.py)``: all lines of a function."""
    name, _, where = frame.rpartition(" (")
    return f"{name} ({where.rpartition(':')[0]})" if name else frame


def _thread_name(frame: str) -> str:
    """``thread (1234): asyncio_3`` -> ``asyncio``; numbers dropped so pools add up."""
    name = frame.partition("): ")[2] or frame
    return re.sub(r"[-_]?\d+", "", name)


def _bucket(frames: list[str], buckets: Buckets) -> str:
    for frame in reversed(frames):
        for label, needles in buckets:
            if any(needle in frame for needle in needles):
                return label
    return "other"


FLEET_BUCKETS: Buckets = [
    ("commands: spawn, read, reap (runtime/, subprocess, child watcher)",
     ("runtime/", "subprocess.py", "unix_events.py")),
    ("live delivery (streaming, websockets, subscriptions)",
     ("server/streaming/", "websockets/", "storage/subscription.py")),
    ("storage: append, writer, SQLite thread", ("storage/", "aiosqlite/")),
    ("events: pydantic models, serialization", ("events/", "pydantic")),
    ("HTTP serving (uvicorn, starlette, h11)", ("uvicorn/", "starlette/", "h11/")),
    ("controller, demo agent, sessions", ("server/",)),
    ("asyncio event loop", ("asyncio/",)),
]  # fmt: skip
CONTROLLER_BUCKETS: Buckets = [
    ("openai: transform request params (_transform.py)", ("_transform.py",)),
    ("json encoding the request body", ("json/encoder.py", "json/__init__.py")),
    ("HTTP client transport (httpx, httpcore)", ("httpx/", "httpcore/")),
    ("openai: other client work (build request, parse response)", ("openai/",)),
    ("storage: append, writer, SQLite thread", ("storage/", "aiosqlite/")),
    ("events: pydantic models, serialization", ("events/", "pydantic")),
    ("HTTP serving (uvicorn, starlette, h11)", ("uvicorn/", "starlette/", "h11/")),
    ("controller, LLM agent", ("server/",)),
    ("asyncio event loop", ("asyncio/",)),
]  # fmt: skip


def profile_lines(profiles: dict[str, Any]) -> list[str]:
    lines: list[str] = []
    for case, summary in profiles.items():
        rows = [[label, f"{share * 100:.1f}%"] for label, share in summary["buckets"].items()]
        threads = ", ".join(
            f"{name} {share * 100:.0f}%" for name, share in list(summary["threads"].items())[:5]
        )
        lines += [
            "",
            render(
                f"py-spy --gil, server during {case}: {summary['samples']:,} samples holding the "
                f"GIL (SQLite's own C work releases it and is not here); "
                f"threads: {threads}",
                ["where (first matching rule)", "share"],
                rows,
            ),
            "  most often on top of the stack: "
            + "; ".join(f"{frame} {share * 100:.1f}%" for frame, share in summary["top_self"][:6]),
            "  most often anywhere in the stack: "
            + "; ".join(
                f"{frame} {share * 100:.1f}%" for frame, share in summary["top_inclusive"][:12]
            ),
        ]
    return lines
