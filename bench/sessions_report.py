"""The targets and the printed report of `bench/sessions.py`, from its result."""

from __future__ import annotations

import math
from typing import Any

from bench.common import Metrics, Verdict, count, environment_line, ms, render, target_lines
from bench.sessions_components import CALLS
from bench.sessions_controller import ControllerConfig
from bench.sessions_fleet import DEMO_COMMANDS, DEMO_SLEEPS, Case, FleetConfig
from bench.sessions_profile import profile_lines
from bench.sessions_spawn import SPAWNED

TARGET_CONVERSATIONS = 1000
TARGET_EVENTS_PER_S = 1000.0

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
    if "admission.rate" in m:
        found.append(
            Verdict(
                m["admission.rate"] >= 500,
                f"admission >= 500 creations/s while {m['admission.appenders']:.0f} "
                "conversations append (REST, end to end)",
                f"{m['admission.rate']:,.0f}/s, creation p99 {m['admission.create_ms.p99']:.1f} ms",
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
        for k in controller.steps:
            ours = m.get(f"controller.{k}.ours_events_per_s")
            if ours is None:
                continue
            late = m[f"controller.{k}.ours_late_events_per_s"]
            found.append(
                Verdict(
                    ours >= TARGET_EVENTS_PER_S and late >= TARGET_EVENTS_PER_S,
                    f"controller's own overhead >= {TARGET_EVENTS_PER_S:,.0f} events/s at "
                    f"K = {k}, whole run and last 10 % (the model's side of each call aside)",
                    f"{ours:,.0f} events/s, last 10 % {late:,.0f}",
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
    if "admission.rate" in m:
        lines += ["", *admission_table(m)]
    lines += profile_lines(result["profiles"])
    lines += ["", *target_lines(result["targets"])]
    return "\n".join(lines)


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
    ours = [
        [
            f"{k:,}",
            count(m[f"controller.{k}.events_per_s"]),
            count(m[f"controller.{k}.ours_events_per_s"]),
            count(m[f"controller.{k}.ours_late_events_per_s"]),
            ms(m[f"controller.{k}.model_wire_us_last"] / 1000),
            ms(m[f"controller.{k}.next_run_start_ms"]),
        ]
        for k in config["steps"]
        if f"controller.{k}.ours_events_per_s" in m
    ]
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
            "(b) ours: events/s with the model's side of each call taken out (from a request's "
            "first byte reaching the model to its answer written: the transcript's transfer "
            "and the model's work), whole run and last 10 % of steps; that model-side time "
            "per call in the last 10 % (ms); the next run's start: a message to the ended "
            "conversation -> its first model call answered (ms)",
            ["K", "events/s", "ours", "ours last 10%", "model side ms", "next run start ms"],
            ours,
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


def admission_table(m: Metrics) -> list[str]:
    return render(
        f"(c) {m['admission.creations']:,.0f} conversations created with a first message "
        f"(admitted, launched) while {m['admission.appenders']:.0f} others append, over REST",
        ["", "per s", "p50 ms", "p99 ms", "max ms"],
        [
            [
                "creations",
                count(m["admission.rate"]),
                *(f"{m[f'admission.create_ms.{q}']:.1f}" for q in ("p50", "p99", "max")),
            ],
            [
                "appends meanwhile",
                count(m["admission.append_rate"]),
                *(f"{m[f'admission.append_ms.{q}']:.1f}" for q in ("p50", "p99", "max")),
            ],
        ],
    ).splitlines() + _admission_cpu(m)


def _admission_cpu(m: Metrics) -> list[str]:
    if "admission.server_cpu" not in m:
        return []
    return [
        f"  server CPU meanwhile: {m['admission.server_cpu'] * 100:.0f}% of a core, "
        f"{m['admission.server_cpu_ms_per_creation']:.2f} ms per creation (appends included); "
        f"the creating client's: {m['admission.creator_cpu_ms_per_creation']:.2f} ms"
    ]
