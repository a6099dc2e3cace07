"""Sessions benchmark: how many agent conversations one server process carries, and what
the controller itself costs per event, in one run.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/sessions.py [--quick] [--runs N] [--parts a,b]
                                       [--conversations 100,500,1000] [--pace 1.0]
                                       [--hold-pace 10] [--no-shims]
                                       [--steps 100,500] [--project 2000] [--py-spy DIR]
                                       [--creations 1000] [--appenders 100]

(a) `bench.sessions_fleet`: for each N, a fresh ``threadline serve`` process, N demo
    conversations started at once, every one watched live over the plain WebSocket from
    subscriber processes: time until all N runs ended, how many ran at once, events/s
    delivered, append -> deliver latency, exactly-once delivery, runs that ended in
    error, the server's RSS and CPU (its own, and that of the shell commands it ran).
    Then the largest N once more at ``--hold-pace``, slow enough that every run is still
    going when the last one is admitted. Beside it, what one demo command costs to spawn
    on this machine (with ``--no-shims`` the server runs without pyenv's shims on PATH:
    here ``python3`` is a shim, a bash script costing ~60 ms of CPU per call).
(c) `bench.sessions_admission`: ``--creations`` conversations created with a first message
    (admitted, their runs launched) while ``--appenders`` others append over REST:
    creations/s, their latency, the appends' latency meanwhile.
(b) `bench.sessions_controller`: one ``llm``-agent conversation against an instant fake
    model (its own process) that answers K ``think`` calls, then ``finish``: events/s,
    how a step's time splits and grows with the transcript, and the parts (the openai
    client call, the same request over bare httpx, one awaited append) timed alone.

With ``--py-spy DIR`` the server is recorded with py-spy during the largest case of each
part (raw collapsed stacks in DIR) and the report says where its samples went.
With ``--runs R`` every figure is the median of R runs (error counts: the worst run).
Results go to ``bench/results/sessions.json``.

This file runs it; beside the two parts, `bench.sessions_spawn` times one demo command,
`bench.sessions_components` the parts of a controller step, `bench.sessions_profile`
reads py-spy recordings, and `bench.sessions_report` holds the targets and tables.
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as `python bench/<name>.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package and the standard library's `http`: search the repository root instead.
# Run as `python -m bench.<name>`, sys.path[0] is the working directory: the same fix.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench import plots, sessions_admission, sessions_controller, sessions_fleet, sessions_spawn
from bench.common import RESULTS, Metrics, environment, log, median, write_result
from bench.machine import busy_processes
from bench.processes import Profiler
from bench.sessions_controller import ControllerConfig
from bench.sessions_fleet import DEMO_COMMANDS, Case, FleetConfig
from bench.sessions_profile import CONTROLLER_BUCKETS, FLEET_BUCKETS, summarise
from bench.sessions_report import report, verdicts

WORST = (
    ".gaps", ".duplicates", ".unfinished", ".count_mismatch", ".error_runs",
    ".not_finished_runs", ".failed_commands", ".server_log_problems", ".ended_in_error",
)  # fmt: skip


def measure_run(
    args: argparse.Namespace, fleet: FleetConfig, controller: ControllerConfig, root: Path
) -> tuple[Metrics, dict[str, Any]]:
    metrics: Metrics = {"loadavg_start": os.getloadavg()[0]}
    profiles: dict[str, Any] = {}
    if "a" in args.parts:
        log("(a) spawn cost of the demo commands")
        metrics |= sessions_spawn.spawn_cost(args.spawn_repeats)
        for case in fleet.all_cases:
            log(f"(a) {case.conversations} demo conversations at once, pace {case.pace:g} s")
            recorded = args.py_spy is not None and case == fleet.cases[-1]
            path = args.py_spy / f"fleet-{case.conversations}.txt" if recorded else None
            metrics |= sessions_fleet.measure(fleet, case, root, Profiler(path))
            if path is not None and path.exists():
                profiles[case.key] = summarise(path, FLEET_BUCKETS)
    if "b" in args.parts:
        log(f"(b) one llm conversation, K = {', '.join(map(str, controller.steps))} steps")
        metrics |= sessions_controller.measure(controller, root, args.py_spy)
        for k in controller.steps:
            path = args.py_spy / f"controller-{k}.txt" if args.py_spy else None
            if path is not None and path.exists():
                profiles[f"controller.{k}"] = summarise(path, CONTROLLER_BUCKETS)
    if "c" in args.parts:
        log(f"(c) {args.creations} creations while {args.appenders} conversations append")
        path = args.py_spy / "admission.txt" if args.py_spy else None
        metrics |= sessions_admission.measure(args.creations, args.appenders, root, Profiler(path))
        if path is not None and path.exists():
            profiles["admission"] = summarise(path, FLEET_BUCKETS)
    metrics["loadavg_end"] = os.getloadavg()[0]
    return metrics, profiles


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100, K = 100, fewer repeats")
    parser.add_argument(
        "--parts", default="a,b,c", help="a (fleet), b (controller), c (admission), any of them"
    )
    parser.add_argument("--creations", type=int, default=1000, help="conversations (c) creates")
    parser.add_argument("--appenders", type=int, default=100, help="appending during (c)")
    parser.add_argument("--conversations", default="100,500,1000", help="N of (a)")
    parser.add_argument("--pace", type=float, default=1.0, help="THREADLINE_DEMO_PACE of (a)")
    parser.add_argument(
        "--hold-pace",
        type=float,
        default=10.0,
        help="one more (a) case: the largest N at this pace, so all run at once (0: none)",
    )
    parser.add_argument(
        "--no-shims", action="store_true", help="(a)'s server without pyenv shims on PATH"
    )
    parser.add_argument("--per-worker", type=int, default=250, help="connections per client")
    parser.add_argument("--run-timeout", type=float, default=300.0, help="seconds per case")
    parser.add_argument("--spawn-repeats", type=int, default=30)
    parser.add_argument("--steps", default="100,500", help="K of (b)")
    parser.add_argument("--project", type=int, default=2000, help="K to project (b) to")
    parser.add_argument("--warmup-steps", type=int, default=20)
    parser.add_argument("--histories", default="0,100,500,2000", help="h of (b)'s parts")
    parser.add_argument("--component-calls", type=int, default=40)
    parser.add_argument("--appends", type=int, default=500)
    parser.add_argument("--runs", type=int, default=1)
    parser.add_argument("--py-spy", type=Path, help="record the server with py-spy here")
    parser.add_argument("--out", type=Path, default=RESULTS / "sessions.json")
    args = parser.parse_args(argv)
    if args.quick:
        args.conversations, args.steps, args.histories = "100", "100", "0,100,500"
        args.hold_pace = 0.0
        args.spawn_repeats, args.component_calls, args.appends = 10, 15, 200
    args.parts = set(args.parts.split(","))
    return args


def _numbers(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(","))


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    counts = _numbers(args.conversations)
    fleet = FleetConfig(
        cases=tuple(Case(n, args.pace) for n in counts),
        hold=Case(max(counts), args.hold_pace) if args.hold_pace else None,
        per_worker=args.per_worker,
        run_timeout=args.run_timeout,
        no_shims=args.no_shims,
    )
    controller = ControllerConfig(
        steps=_numbers(args.steps),
        project=args.project,
        warmup_steps=args.warmup_steps,
        histories=_numbers(args.histories),
        component_calls=args.component_calls,
        appends=args.appends,
        poll=0.2,
        run_timeout=args.run_timeout,
    )
    others = busy_processes(exclude={os.getpid()})
    root = Path(tempfile.mkdtemp(prefix="threadline-sessions-", dir="/tmp"))
    root.chmod(0o711)  # sandbox users must reach their workspaces below it
    runs: list[Metrics] = []
    profiles: dict[str, Any] = {}
    try:
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            metrics, profiles = measure_run(args, fleet, controller, root)
            runs.append(metrics)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    middle = median(runs, worst=WORST)
    result = {
        "config": {
            "parts": sorted(args.parts),
            "fleet": {
                "cases": [dataclasses.asdict(case) for case in fleet.all_cases],
                "per_worker": fleet.per_worker,
                "no_shims": fleet.no_shims,
                "commands": list(DEMO_COMMANDS),
            },
            "controller": {
                "steps": list(controller.steps),
                "project": controller.project,
                "histories": list(controller.histories),
                "warmup_steps": controller.warmup_steps,
            },
        },
        "environment": environment(),
        "load": {
            "start": statistics.median(run["loadavg_start"] for run in runs),
            "end": statistics.median(run["loadavg_end"] for run in runs),
            "others": others,
        },
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle, fleet, controller)],
        "profiles": profiles,
        "runs": runs,
    }
    write_result(args.out, result, report)
    plots.draw_beside(args.out, result)


if __name__ == "__main__":
    main()
