"""Export benchmark: a whole conversation out of the real server, streamed.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/export.py [--events 1000000] [--runs 1] [--keep DIR]

Two conversations of realistic events (the generator of bench/storage_events.py) are
loaded with `SqliteStorage.append_many`: one of ``--events`` and one of a tenth of that,
so the figures show whether memory grows with the conversation. Then
``python -m server.cli serve`` runs on that directory and each conversation is exported
three ways: ``GET .../trajectory?format=jsonl`` and ``GET .../trajectory`` (the JSON
trajectory) read by an httpx client that counts and discards the body, and
``threadline export ID -o FILE.jsonl`` (the CLI writing a file). Measured: events/s,
MB/s, the server's RSS when it has started and its peak over the exports (sampled every
20 ms from /proc; a fresh server per conversation), and the CLI's own peak RSS. The
server's growth includes SQLite's page cache, bounded at 64 MiB per connection.
"""

from __future__ import annotations

import argparse
import asyncio
import math
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

# Run as `python bench/export.py`, sys.path[0] is bench/, whose http.py would shadow the
# standard library's http: replace it with the repository root.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx

from bench.common import MIB, RESULTS, environment, log, median, render, write_result
from bench.machine import rss_bytes, warm
from bench.processes import Subprocess, free_port, wait_for_port
from bench.storage_events import chunks, script
from storage import NewConversation
from storage.sqlite import SqliteStorage


async def load(directory: Path, sizes: dict[str, int]) -> dict[str, float]:
    """Load each conversation; returns the load rate (events/s)."""
    started, total = time.perf_counter(), 0
    async with await SqliteStorage.open(directory) as store:
        for conversation_id, events in sizes.items():
            await store.create_conversation(NewConversation(id=conversation_id, title="bench"))
            for batch in chunks(script(7, events, Counter()).events(events), 1000):
                await store.append_many(conversation_id, batch)
            total += events
    return {"load.events_per_s": total / (time.perf_counter() - started)}


class RssSampler:
    """Samples a process's RSS (or ``field``) every 20 ms in a thread until stopped, or
    until the process is gone; keeps the peak."""

    def __init__(self, pid: int, field: str = "VmRSS") -> None:
        self.pid, self.field, self.peak = pid, field, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def __enter__(self) -> RssSampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()

    def _run(self) -> None:
        while True:
            try:
                self.peak = max(self.peak, rss_bytes(self.pid, self.field))
            except (OSError, RuntimeError):
                return  # it exited
            if self._stop.wait(0.02):
                return


def over_http(
    url: str, pid: int, path: str, params: dict[str, str], events: int = 0
) -> dict[str, float]:
    """One export read and discarded; JSON Lines are counted as they come, a JSON
    trajectory is taken to hold ``events``."""
    size = 0
    with httpx.Client(base_url=url, timeout=600) as client, RssSampler(pid) as sampler:
        started = time.perf_counter()
        with client.stream("GET", path, params=params) as response:
            response.raise_for_status()
            for chunk in response.iter_raw(1 << 20):
                size += len(chunk)
                if params.get("format"):
                    events += chunk.count(b"\n")
        seconds = time.perf_counter() - started
    return figures(events, size, seconds) | {"server_rss_peak_mib": sampler.peak / MIB}


def with_cli(url: str, pid: int, conversation_id: str, out: Path) -> dict[str, float]:
    command = [sys.executable, "-m", "server.cli", "export", conversation_id, "-o", str(out)]
    with RssSampler(pid) as sampler:
        started = time.perf_counter()
        child = subprocess.Popen([*command, "--url", url], stderr=subprocess.DEVNULL)
        # Its own high-water mark from /proc (wait4's would count the fork of this
        # process, which holds far more than the command does).
        with RssSampler(child.pid, "VmHWM") as cli:
            status = child.wait()
        seconds = time.perf_counter() - started
    if status != 0:
        raise RuntimeError(f"threadline export failed: {status}")
    events = sum(1 for _ in out.open("rb"))
    return figures(events, out.stat().st_size, seconds) | {
        "server_rss_peak_mib": sampler.peak / MIB,
        "cli_rss_peak_mib": cli.peak / MIB,
    }


def figures(events: int, size: int, seconds: float) -> dict[str, float]:
    return {
        "events": events,
        "seconds": seconds,
        "events_per_s": events / seconds,
        "mb_per_s": size / seconds / 1e6,
        "bytes_per_event": size / max(events, 1),
    }


def measure(directory: Path, sizes: dict[str, int], work: Path) -> dict[str, Any]:
    """Each conversation against a server of its own, started cold: its RSS at start and
    its peak over the exports show whether memory follows the conversation's size."""
    results: dict[str, Any] = {}
    for conversation_id in sizes:
        port = free_port()
        server = Subprocess(
            [sys.executable, "-m", "server.cli", "serve", "--port", str(port), "--data-dir",
             str(directory.parent), "--log-level", "warning"],
            work / "server.log",
        )  # fmt: skip
        url = f"http://127.0.0.1:{port}"
        path = f"/api/conversations/{conversation_id}/trajectory"
        try:
            wait_for_port(port)
            warm(directory)
            start = rss_bytes(server.pid) / MIB
            lines = {"format": "jsonl"}
            runs = {
                "cold jsonl": over_http(url, server.pid, path, lines),
                "jsonl": over_http(url, server.pid, path, lines),
            }
            count = int(runs["jsonl"]["events"])
            runs["json"] = over_http(url, server.pid, path, {}, count)
            out = work / f"{conversation_id}.jsonl"
            runs["cli"] = with_cli(url, server.pid, conversation_id, out)
            out.unlink()
            for name, run in runs.items():
                results[f"{conversation_id} {name}"] = run | {"server_rss_start_mib": start}
        finally:
            server.stop()
    return results


def report(result: dict[str, Any]) -> str:
    rows = []
    for name, run in result["runs"].items():
        rows.append(
            [
                name,
                f"{run['events']:,.0f}",
                f"{run['seconds']:.1f}",
                f"{run['events_per_s']:,.0f}",
                f"{run['mb_per_s']:.0f}",
                f"{run['server_rss_start_mib']:.0f}",
                f"{run['server_rss_peak_mib']:.0f}",
                f"{run['server_rss_peak_mib'] - run['server_rss_start_mib']:+.0f}",
                f"{run['cli_rss_peak_mib']:.0f}" if "cli_rss_peak_mib" in run else "-",
            ]
        )
    header = ["export", "events", "s", "events/s", "MB/s", "start", "peak", "growth", "CLI"]
    return render(
        "Export of a whole conversation: server RSS (MiB) at start and at its peak during "
        "the export, growth over start, and the CLI's own peak "
        f"(median of {result['runs_count']}; {_loaded(result['load']['load.events_per_s'])})",
        header,
        rows,
    )


def _loaded(rate: float | None) -> str:
    if rate is None or math.isnan(rate):  # NaN is null once written as JSON
        return "dataset reused"
    return f"loaded at {rate:,.0f} events/s"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--keep", type=Path, help="data directory to keep and reuse")
    arguments = parser.parse_args()
    sizes = {"tenth": max(1, arguments.events // 10), "big": arguments.events}
    work = Path(tempfile.mkdtemp(prefix="threadline-export-"))
    data = arguments.keep or work / "data"
    directory = data / "log"
    try:
        loaded: dict[str, float] = {"load.events_per_s": float("nan")}
        if not (directory / "events.db").exists():
            log(f"loading {sum(sizes.values()):,} events into {directory}")
            loaded = asyncio.run(load(directory, sizes))
        runs = []
        for number in range(arguments.runs):
            log(f"run {number + 1} of {arguments.runs}")
            runs.append(measure(directory, sizes, work))
        merged = {name: median([run[name] for run in runs]) for name in runs[0]}
        result = {"load": loaded, "runs": merged, "runs_count": arguments.runs,
                  "environment": environment()}  # fmt: skip
        write_result(RESULTS / "export.json", result, report)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
