"""Helpers the server benchmarks share: the probe event, percentiles, process figures read
from /proc, tables, and the environment stamp.

Importable as ``bench.common`` once the repository root is on ``sys.path`` (each
benchmark script puts it there before importing anything of the project).
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import socket
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STARTED = time.perf_counter()
Metrics = dict[str, float]

EVENT_BYTES = 530
"""About the size of a typical stored event (PERFORMANCE.md's serialization figures)."""

_FILLER = (
    "the test fails because the value is missing from the response so check how the parser "
    "handles empty input before changing the code then run the suite again and see whether "
    "it passes now "
)


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


# -- the probe event -------------------------------------------------------------------


def stamped_thought(sent_at: float, length: int) -> str:
    """A think action's thought that starts with the wall-clock time it was sent at
    (``time.time()``), padded with prose to ``length`` characters."""
    head = f"{sent_at:.6f} "
    padding = (_FILLER * (length // len(_FILLER) + 1))[: max(0, length - len(head))]
    return head + padding


def sent_at(thought: str) -> float:
    """The inverse of `stamped_thought`."""
    return float(thought[: thought.index(" ")])


# -- figures ---------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(prefix: str, samples: Iterable[float]) -> Metrics:
    ordered = sorted(samples)
    return {
        f"{prefix}.p50": percentile(ordered, 0.50),
        f"{prefix}.p99": percentile(ordered, 0.99),
        f"{prefix}.max": ordered[-1] if ordered else float("nan"),
    }


def median(runs: Sequence[Metrics], worst: Iterable[str] = ()) -> Metrics:
    """Per key, the median over runs; keys ending with one of ``worst`` take the maximum
    instead (error counts: one bad run must show)."""
    suffixes = tuple(worst)
    keys = dict.fromkeys(key for run in runs for key in run)
    merged: Metrics = {}
    for key in keys:
        values = [run[key] for run in runs if key in run]
        merged[key] = (
            max(values) if suffixes and key.endswith(suffixes) else statistics.median(values)
        )
    return merged


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of a process from /proc (Linux); ``field="VmHWM"`` for its peak."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no {field} for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time a process has used (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy_seconds() -> float:
    """CPU time all processes of the machine have used (every CPU, from /proc/stat): with
    a benchmark's own CPU time subtracted, what others took from it."""
    fields = Path("/proc/stat").read_text().splitlines()[0].split()[1:]
    user, nice, system, _idle, _iowait, irq, softirq, steal = (int(f) for f in fields[:8])
    return (user + nice + system + irq + softirq + steal) / os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def wait_for_port(port: int, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return
        except OSError:
            if time.monotonic() > deadline:
                raise TimeoutError(f"nothing listens on 127.0.0.1:{port}") from None
            time.sleep(0.05)


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    target: str
    figure: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "target": self.target, "figure": self.figure}


def verdict_lines(verdicts: Iterable[dict[str, Any]]) -> list[str]:
    return [
        f"  {'PASS' if verdict['passed'] else 'FAIL'}  {verdict['target']}: {verdict['figure']}"
        for verdict in verdicts
    ]


def render(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = [title]
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def ms(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def count(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def ratio(ours: float | None, bare: float | None) -> str:
    if ours is None or bare is None or math.isnan(ours) or math.isnan(bare) or not bare:
        return "-"
    return f"{ours / bare:.2f}x"


def environment() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    versions = {}
    for package in ("uvicorn", "starlette", "python-socketio", "python-engineio", "websockets"):
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            versions[package] = "-"
    return {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        **versions,
        "commit": commit or "unknown",
    }


def environment_line(env: dict[str, Any]) -> str:
    return (
        f"{env['cpus']} CPUs, Python {env['python']}, uvicorn {env['uvicorn']}, starlette "
        f"{env['starlette']}, python-socketio {env['python-socketio']}, websockets "
        f"{env['websockets']}, SQLite {env['sqlite']}; commit {env['commit']}"
    )
