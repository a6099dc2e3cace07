"""Sessions benchmark: how many agent conversations one server process carries, and what
the controller itself costs per event, in one run.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/sessions.py [--quick] [--runs N] [--parts a,b]
                                       [--conversations 100,500,1000] [--pace 1.0]
                                       [--hold-pace 10] [--no-shims]
                                       [--steps 100,500] [--project 2000] [--py-spy DIR]

(a) `bench.sessions_fleet`: for each N, a fresh ``threadline serve`` process, N demo
    conversations started at once, every one watched live over the plain WebSocket from
    subscriber processes: time until all N runs ended, how many ran at once, events/s
    delivered, append -> deliver latency, exactly-once delivery, runs that ended in
    error, the server's RSS and CPU (its own, and that of the shell commands it ran).
    Then the largest N once more at ``--hold-pace``, slow enough that every run is still
    going when the last one is admitted. Beside it, what one demo command costs to spawn
    on this machine (with ``--no-shims`` the server runs without pyenv's shims on PATH:
    here ``python3`` is a shim, a bash script costing ~60 ms of CPU per call).
(b) `bench.sessions_controller`: one ``llm``-agent conversation against an instant fake
    model (its own process) that answers K ``think`` calls, then ``finish``: events/s,
    how a step's time splits and grows with the transcript, and the parts (the openai
    client call, the same request over bare httpx, one awaited append) timed alone.

With ``--py-spy DIR`` the server is recorded with py-spy during the largest case of each
part (raw collapsed stacks in DIR) and the report says where its samples went.
With ``--runs R`` every figure is the median of R runs (error counts: the worst run).
Results go to ``bench/results/sessions.json``.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import shutil
import statistics
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# Run as `python bench/sessions.py`, sys.path[0] is bench/, whose modules would shadow
# the `storage` package and the standard library's `http`: search the repository root.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import orjson

from bench import sessions_controller, sessions_fleet
from bench.common import (
    RESULTS,
    Metrics,
    Verdict,
    count,
    environment,
    environment_line,
    log,
    median,
    ms,
    render,
    verdict_lines,
)
from bench.sessions_controller import CALLS, ControllerConfig
from bench.sessions_fleet import DEMO_COMMANDS, DEMO_SLEEPS, SPAWNED, Case, FleetConfig
from bench.sessions_server import Buckets, Profiler, busy_processes, summarise

WORST = (
    ".gaps", ".duplicates", ".unfinished", ".count_mismatch", ".error_runs",
    ".not_finished_runs", ".failed_commands", ".server_log_problems", ".ended_in_error",
)  # fmt: skip
TARGET_CONVERSATIONS = 1000
TARGET_EVENTS_PER_S = 1000.0

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

FLEET_HEADER = ["N @ pace", "admit all", "all done", "peak running", "run p50", "run max", "events",
                "events/s", "cmds/s", "p50", "p99", "max", "exactly once", "error runs",
                "failed cmds"]  # fmt: skip
RESOURCE_HEADER = ["N @ pace", "srv CPU", "µs/event", "cmds CPU", "idle", "srv cores", "loop",
                   "cmds cores", "machine", "RSS idle", "RSS peak", "KiB/conv", "create",
                   "subscribe"]  # fmt: skip
CONTROLLER_HEADER = ["K", "events", "wall s", "events/s", "first 10%", "last 10%", "step first",
                     "step last", "log", "model first", "model last", "srv cores",
                     "loop"]  # fmt: skip
GROWTH_HEADER = ["K", "fixed ms", "µs/step", "1st req KiB", "last req KiB", "sent MiB",
                 "fake µs/req"]  # fmt: skip


def measure_run(
    args: argparse.Namespace, fleet: FleetConfig, controller: ControllerConfig, root: Path
) -> tuple[Metrics, dict[str, Any]]:
    metrics: Metrics = {"loadavg_start": os.getloadavg()[0]}
    profiles: dict[str, Any] = {}
    if "a" in args.parts:
        log("(a) spawn cost of the demo commands")
        metrics |= sessions_fleet.spawn_cost(args.spawn_repeats)
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
    metrics["loadavg_end"] = os.getloadavg()[0]
    return metrics, profiles


# -- targets and report ----------------------------------------------------------------


def verdicts(m: Metrics, fleet: FleetConfig, controller: ControllerConfig) -> list[Verdict]:
    found: list[Verdict] = []
    if f"{fleet.cases[0].key}.events" in m:
        held = fleet.hold or fleet.cases[-1]
        p, n = held.key, held.conversations
        ok = m[f"{p}.not_finished_runs"] == 0 and m[f"{p}.error_runs"] == 0
        peak = m[f"{p}.peak_running"]
        found.append(
            Verdict(
                ok and peak >= TARGET_CONVERSATIONS,
                f"{TARGET_CONVERSATIONS:,} demo conversations running at once on one process, "
                "every run finished",
                f"{held.label}: {n - m[f'{p}.not_finished_runs']:,.0f} of {n:,} finished, "
                f"{m[f'{p}.error_runs']:.0f} in error, at most {peak:,.0f} running at once "
                f"(admitting all took {m[f'{p}.start_s']:.1f} s)",
            )
        )
        bad = sum(
            m[f"{case.key}.{key}"]
            for case in fleet.all_cases
            for key in ("gaps", "duplicates", "unfinished", "count_mismatch")
        )
        found.append(
            Verdict(
                bad == 0,
                "every subscriber saw ids 0..n exactly once, and as many as the server holds",
                f"{bad:.0f} violations (gaps + duplicates + unfinished + count mismatches)",
            )
        )
    if f"controller.{controller.steps[0]}.events" in m:
        biggest = max(controller.steps)
        rate = m[f"controller.{biggest}.events_per_s"]
        found.append(
            Verdict(
                rate >= TARGET_EVENTS_PER_S,
                f"controller >= {TARGET_EVENTS_PER_S:,.0f} events/s, one llm conversation, "
                f"K = {biggest}",
                f"{rate:,.0f} events/s",
            )
        )
        projected = m.get(f"controller.{biggest}.projected_{controller.project}_events_per_s")
        if projected is not None:
            found.append(
                Verdict(
                    projected >= TARGET_EVENTS_PER_S,
                    f"the same at K = {controller.project} (projected from the fitted line)",
                    f"{projected:,.0f} events/s",
                )
            )
    return found


def fleet_tables(m: Metrics, config: dict[str, Any]) -> list[str]:
    rows, resources = [], []
    for case in (Case(**fields) for fields in config["cases"]):
        p, n = case.key, case.conversations
        if f"{p}.events" not in m:
            continue
        bad = sum(m[f"{p}.{k}"] for k in ("gaps", "duplicates", "unfinished", "count_mismatch"))
        rows.append(
            [
                case.label,
                f"{m[f'{p}.start_s']:.1f}",
                f"{m[f'{p}.makespan_s']:.1f}",
                count(m[f"{p}.peak_running"]),
                f"{m[f'{p}.run.p50_s']:.1f}",
                f"{m[f'{p}.run.max_s']:.1f}",
                count(m[f"{p}.events"]),
                count(m[f"{p}.events_per_s"]),
                count(m[f"{p}.commands_per_s"]),
                ms(m[f"{p}.latency.p50"]),
                ms(m[f"{p}.latency.p99"]),
                ms(m[f"{p}.latency.max"]),
                "yes" if bad == 0 else f"NO ({bad:.0f})",
                f"{m[f'{p}.error_runs']:.0f}",
                f"{m[f'{p}.failed_commands']:.0f}",
            ]
        )
        resources.append(
            [
                case.label,
                f"{m[f'{p}.cpu_server_s']:.1f}",
                f"{m[f'{p}.cpu_server_s'] / m[f'{p}.events'] * 1e6:.0f}",
                f"{m[f'{p}.cpu_commands_s']:.1f}",
                f"{m[f'{p}.cpu_idle_core']:.2f}",
                f"{m[f'{p}.cpu_server_core']:.2f}",
                f"{m[f'{p}.cpu_main_core']:.2f}",
                f"{m[f'{p}.cpu_commands_core']:.2f}",
                f"{m[f'{p}.machine_busy'] * 100:.0f}%",
                f"{m[f'{p}.rss_idle_mib']:.0f}",
                f"{m[f'{p}.rss_peak_mib']:.0f}",
                f"{(m[f'{p}.rss_peak_mib'] - m[f'{p}.rss_idle_mib']) * 1024 / n:.0f}",
                f"{m[f'{p}.created_s']:.1f}",
                f"{m[f'{p}.connect_s']:.1f}",
            ]
        )
    spawn = [
        [
            label,
            ms(m[f"spawn.{i}.wall_ms"]),
            ms(m[f"spawn.{i}.parent_cpu_ms"]),
            ms(m[f"spawn.{i}.children_cpu_ms"]),
        ]
        for i, (label, _, _) in enumerate(SPAWNED)
        if f"spawn.{i}.wall_ms" in m
    ]
    return [
        render(
            "(a) N demo conversations started at once, each watched over the WebSocket. A run: "
            f"{DEMO_SLEEPS} pauses of THREADLINE_DEMO_PACE s (so >= {DEMO_SLEEPS} x pace alone) "
            f"and {len(DEMO_COMMANDS)} shell commands; server PATH "
            f"{'without pyenv shims' if config['no_shims'] else 'inherited'}. Times in s "
            "(admit all: until every first message was accepted; peak running: most runs in "
            "progress at once); latency append -> deliver in ms",
            FLEET_HEADER,
            rows,
        ),
        "",
        render(
            "(a) server resources during the runs: CPU s (own, per event in µs, and its "
            "commands'), CPU in cores (idle = before the runs, N subscribers connected; then CPU "
            "s / all-done time; loop = its main thread alone), "
            "machine busy (both CPUs, anyone), RSS MiB (idle with N subscribers, peak), KiB per "
            "conversation, setup s",
            RESOURCE_HEADER,
            resources,
        ),
        "",
        render(
            "(a) one demo command spawned alone from a Python process (median wall ms; "
            "mean CPU ms in the parent and in the children)",
            ["command", "wall", "parent CPU", "children CPU"],
            spawn,
        ),
    ]


def controller_tables(m: Metrics, config: dict[str, Any]) -> list[str]:
    rows, growth = [], []
    project = config["project"]
    for k in config["steps"]:
        p = f"controller.{k}"
        if f"{p}.events" not in m:
            continue
        rows.append(
            [
                f"{k:,}",
                count(m[f"{p}.events"]),
                f"{m[f'{p}.wall_s']:.1f}",
                count(m[f"{p}.events_per_s"]),
                count(m[f"{p}.early_events_per_s"]),
                count(m[f"{p}.late_events_per_s"]),
                ms(m[f"{p}.step_ms_early"]),
                ms(m[f"{p}.step_ms_late"]),
                ms(m[f"{p}.log_ms"]),
                ms(m[f"{p}.model_ms_early"]),
                ms(m[f"{p}.model_ms_late"]),
                f"{m[f'{p}.cpu_server_core']:.2f}",
                f"{m[f'{p}.cpu_main_core']:.2f}",
            ]
        )
        projected_s = m.get(f"{p}.projected_{project}_s", math.nan)
        growth.append(
            [
                f"{k:,}",
                ms(m.get(f"{p}.fit_fixed_ms")),
                ms(m.get(f"{p}.fit_growth_us_per_step")),
                f"{m[f'{p}.request_kib_first']:.1f}",
                f"{m[f'{p}.request_kib_last']:.0f}",
                f"{m[f'{p}.request_mib_total']:.0f}",
                ms(m[f"{p}.model_busy_us_per_request"]),
                _percent(m.get(f"{p}.growth_share")),
                f"{projected_s:.0f}" if not math.isnan(projected_s) else "-",
                _percent(m.get(f"{p}.projected_{project}_growth_share")),
                count(m.get(f"{p}.projected_{project}_events_per_s")),
            ]
        )
    parts = [
        [
            f"{h:,}",
            f"{m[f'component.{h}.body_kib']:.0f}",
            *(ms(m[f"component.{h}.{label}_ms"]) for label in CALLS),
        ]
        for h in config["histories"]
        if f"component.{h}.create_ms" in m
    ]
    append = m.get("component.append_us")
    notes = [
        f"  one awaited SqliteStorage.append (think action with metadata and metrics): "
        f"{ms(append / 1000 if append else None)} ms; a step waits for two"
    ]
    smallest = min(config["steps"])
    fixed = m.get(f"controller.{smallest}.fit_fixed_ms")
    if fixed is not None and "component.0.create_ms" in m:
        cheaper = fixed - m["component.0.create_ms"] + m["component.0.post_bytes_ms"]
        notes.append(
            f"  the fixed step cost fitted at K={smallest}, with the model call made as "
            f"post(content=bytes) instead of create: ~{cheaper:.2f} ms = ~{2000 / cheaper:,.0f} "
            "events/s (and no growth term)"
        )
    return [
        render(
            "(b) one llm conversation, instant fake model, K think steps then finish: events/s "
            "(whole run, first and last 10 % of steps), step ms (median, first / last 10 %), "
            "log = action -> its observation, model = observation -> next action; server CPU "
            "in cores (loop = its main thread)",
            CONTROLLER_HEADER,
            rows,
        ),
        "",
        render(
            "(b) growth: step ms = fixed + growth * step number (least squares), and the growth "
            "term's share of the run; what the model server received (KiB, MiB) and spent per "
            f"request (µs); projected K = {project:,}",
            [*GROWTH_HEADER, "growth", f"K={project} s", "growth", f"K={project} ev/s"],
            growth,
        ),
        "",
        render(
            "(b) parts timed alone (servers idle): one model call with the agent's transcript "
            "after h steps, ms: openai chat.completions.create (the agent's way), the client's "
            ".post(body=dict) (no params transform), .post(content=orjson bytes), bare httpx",
            ["h steps", "body KiB", "create", "post(body)", "post(bytes)", "bare httpx"],
            parts,
        ),
        *notes,
    ]


def _percent(value: float | None) -> str:
    return "-" if value is None or math.isnan(value) else f"{value * 100:.0f}%"


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


def report(result: dict[str, Any]) -> str:
    config, m = result["config"], result["median"]
    load = result["load"]
    lines = [
        f"threadline sessions benchmark; median of {len(result['runs'])} run(s)",
        environment_line(result["environment"]),
        f"load average at start {load['start']:.2f}, at end {load['end']:.2f}; other busy "
        f"processes at start: {'; '.join(load['others']) or 'none'}",
    ]
    if any(key.startswith("fleet.") for key in m):
        lines += ["", *fleet_tables(m, config["fleet"])]
    if any(key.startswith("controller.") for key in m):
        lines += ["", *controller_tables(m, config["controller"])]
    lines += profile_lines(result["profiles"])
    lines += ["", "targets (on the medians)", *verdict_lines(result["targets"])]
    return "\n".join(lines)


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N = 100, K = 100, fewer repeats")
    parser.add_argument("--parts", default="a,b", help="a (fleet), b (controller) or both")
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
    runs, profiles = [], {}
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
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
