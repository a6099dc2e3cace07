"""Helpers every benchmark shares: paths, the progress log, figures (percentiles, medians
over runs), the report's tables and targets, the environment stamp, and writing the result.

Importable as ``bench.common`` once the repository root is on ``sys.path`` (each
benchmark script puts it there before importing anything of the project). Processes and
ports are in `bench.processes`, what /proc says in `bench.machine`.
"""

from __future__ import annotations

import importlib.metadata
import math
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
STARTED = time.perf_counter()
LOAD_AT_START = os.getloadavg()
"""The 1-, 5- and 15-minute load averages when the benchmark started (this import)."""
MIB = 1024 * 1024
Metrics = dict[str, float]

SERVER_PACKAGES = ("uvicorn", "starlette", "python-socketio", "python-engineio", "websockets")
"""The packages whose versions the environment stamp records by default."""


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


# -- figures ---------------------------------------------------------------------------


def percentile(ordered: Sequence[float], fraction: float) -> float:
    """Nearest-rank percentile of an already sorted sequence (nan when empty)."""
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def latency(prefix: str, samples: Iterable[float]) -> Metrics:
    """Nearest-rank p50 and p99, and the maximum, of ``samples`` (in their own unit)."""
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


# -- the report ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    target: str
    figure: str

    def as_dict(self) -> dict[str, Any]:
        return {"passed": self.passed, "target": self.target, "figure": self.figure}


def target_lines(verdicts: Iterable[dict[str, Any]]) -> list[str]:
    """The report's last section: every target (`Verdict.as_dict`), passed or failed."""
    return [
        "targets (on the medians)",
        *(
            f"  {'PASS' if verdict['passed'] else 'FAIL'}  {verdict['target']}: {verdict['figure']}"
            for verdict in verdicts
        ),
    ]


def render(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A table under ``title``: the first column left-aligned, the others right-aligned."""
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = [title]
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def ms(value: float | None) -> str:
    """Milliseconds with three significant figures at most (``-`` for none)."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def count(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value:,.0f}"


def ratio(ours: float | None, bare: float | None) -> str:
    if ours is None or bare is None or math.isnan(ours) or math.isnan(bare) or not bare:
        return "-"
    return f"{ours / bare:.2f}x"


def environment(packages: Iterable[str] = SERVER_PACKAGES) -> dict[str, Any]:
    """The machine, Python, SQLite and ``packages`` versions, the git commit, when the
    run finished (UTC) and the load averages at its start and now (its end)."""
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    versions = {}
    for package in packages:
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
        "host": platform.node(),
        "cpu_model": _cpu_model(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "load_start": list(LOAD_AT_START),
        "load_end": list(os.getloadavg()),
    }


def _cpu_model() -> str:
    """The CPU's model name from /proc/cpuinfo (Linux; ``-`` elsewhere)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "-"
    for line in text.splitlines():
        if line.startswith("model name"):
            return line.partition(":")[2].strip()
    return "-"


def environment_line(env: dict[str, Any]) -> str:
    """The report's line about an `environment` of the default packages."""
    return (
        f"{env['cpus']} CPUs, Python {env['python']}, uvicorn {env['uvicorn']}, starlette "
        f"{env['starlette']}, python-socketio {env['python-socketio']}, websockets "
        f"{env['websockets']}, SQLite {env['sqlite']}; commit {env['commit']}"
    )


def write_result(
    out: Path, result: dict[str, Any], report: Callable[[dict[str, Any]], str]
) -> None:
    """Write ``result`` to ``out`` as indented JSON, then print its report."""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    log(f"wrote {out}")
