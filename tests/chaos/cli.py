"""``scripts/chaos``: run the scenarios, print their figures and checks, exit 1 on any
violation (2 when the harness itself could not run)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from types import FrameType

from tests.chaos.options import SCENARIOS, Options
from tests.chaos.outcome import Outcome, report

Scenario = Callable[[Options, Path], Awaitable[Outcome]]
MODULES = {
    "kill": "kill", "sigterm": "sigterm", "storm": "storm", "disk": "diskfull", "slow": "slow",
}  # fmt: skip


def scenario(name: str) -> Scenario:
    module = importlib.import_module(f"tests.chaos.{MODULES[name]}")
    runner: Scenario = module.run
    return runner


async def run_one(name: str, options: Options, workdir: Path) -> Outcome:
    """Run one scenario in its own directory under ``workdir``, with the machine's load
    average before and after among its figures."""
    directory = workdir / name
    directory.mkdir(parents=True, exist_ok=True)
    before = loadavg()
    started = time.monotonic()
    outcome = await scenario(name)(options, directory)
    outcome.add(seconds_s=time.monotonic() - started, loadavg_before=before)
    outcome.add(loadavg_after=loadavg())
    return outcome


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="scripts/chaos",
        description="Abuse a real threadline server and check the log's and streams' "
        "guarantees. Scenarios: " + ", ".join(SCENARIOS),
    )
    parser.add_argument(
        "--scenario", action="append", choices=SCENARIOS, help="repeatable; default: all"
    )
    parser.add_argument("--short", action="store_true", help="the test suite's short version")
    parser.add_argument("--rounds", type=int, help="kill -9 and SIGTERM rounds")
    parser.add_argument("--kill-rounds", type=int)
    parser.add_argument("--sigterm-rounds", type=int)
    parser.add_argument("--seconds", type=float, help="bound on each scenario's rounds")
    parser.add_argument("--subscribers", type=int, help="reconnect storm subscribers")
    parser.add_argument("--storm-seconds", type=float)
    parser.add_argument("--rate", type=float, dest="storm_rate", help="storm events/s")
    parser.add_argument("--writers", type=int, dest="kill_writers", help="kill-round writers")
    parser.add_argument("--disk-mb", type=int, help="tmpfs size for the disk-full scenario")
    parser.add_argument("--slow-clients", type=int, help="never-reading clients per transport")
    parser.add_argument("--slow-mb", type=int, help="MB of events flowing past them per phase")
    parser.add_argument("--slow-rss-bound-mb", type=float)
    parser.add_argument("--seed", type=int)
    parser.add_argument("--workdir", type=Path, help="keep data and server logs here")
    return parser


def options_from(arguments: argparse.Namespace) -> Options:
    options = Options.short() if arguments.short else Options()
    changes = {
        name: value
        for name, value in vars(arguments).items()
        if value is not None and name not in ("scenario", "short", "rounds", "workdir")
    }
    if arguments.rounds is not None:
        changes.setdefault("kill_rounds", arguments.rounds)
        changes.setdefault("sigterm_rounds", arguments.rounds)
    return options.replace(**changes)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # so every cleanup (umount!) runs


def main(argv: Sequence[str] | None = None) -> int:
    arguments = _parser().parse_args(argv)
    options = options_from(arguments)
    names = arguments.scenario or list(SCENARIOS)
    workdir = arguments.workdir or Path(tempfile.mkdtemp(prefix="threadline-chaos-"))
    signal.signal(signal.SIGTERM, _interrupt)
    print(f"chaos: {', '.join(names)}; load average {loadavg()}; data in {workdir}", flush=True)
    outcomes: list[Outcome] = []
    try:
        for name in names:
            outcome = asyncio.run(run_one(name, options, workdir))
            outcomes.append(outcome)
            print(report(outcome), flush=True)
    except KeyboardInterrupt:
        print("chaos: interrupted", file=sys.stderr)
        return 2
    failed = [outcome.scenario for outcome in outcomes if not outcome.passed]
    print(f"chaos: {len(outcomes) - len(failed)} of {len(outcomes)} scenarios passed"
          + (f"; FAILED: {', '.join(failed)}" if failed else ""))  # fmt: skip
    if not failed and arguments.workdir is None:
        shutil.rmtree(workdir, ignore_errors=True)
    return 1 if failed else 0
