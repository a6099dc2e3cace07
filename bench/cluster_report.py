"""The targets (issue 14) and the printed report of `bench/cluster.py`, from its result."""

from __future__ import annotations

from typing import Any

from bench.cluster_session import DEPLOYMENTS, Config
from bench.common import Metrics, Verdict, count, environment_line, ms, render, target_lines

SUSTAINED = 0.95
"""Offered rates count as sustained when at least this share of them was achieved."""
TARGET_P99_MS = 50.0
TARGET_SUBSCRIBERS = 1000
TARGET_RATIO = 0.5
TRANSPORTS = {"ws": "plain WebSocket", "sio": "Socket.IO over WebSocket"}
HEADER = (
    "", "events", "appended/s", "delivered/s", "p50", "p99", "max", "p99 by process",
    "exactly once", "append", "server CPUs", "pg CPUs", "client CPUs", "others",
    "load before / after",
)  # fmt: skip
BASELINE_HEADER = (
    "", "events/s", "commits", "mean batch", "max batch", "vs raw", "own CPUs", "pg CPUs",
)  # fmt: skip


def verdicts(m: Metrics, config: Config) -> list[Verdict]:
    found: list[Verdict] = []
    p = f"pg2.{TARGET_SUBSCRIBERS}"
    if f"{p}.p99" in m:
        appended, delivered, p99 = (
            m[f"{p}.appended_per_s"], m[f"{p}.delivered_per_s"], m[f"{p}.p99"]
        )  # fmt: skip
        offered = config.rate * TARGET_SUBSCRIBERS
        found.append(
            Verdict(
                appended >= SUSTAINED * config.rate
                and delivered >= SUSTAINED * offered
                and p99 <= TARGET_P99_MS,
                f"2 processes on PostgreSQL sustain the offered {config.rate:g} events/s to "
                f"{TARGET_SUBSCRIBERS:,} subscribers (>= {SUSTAINED:.0%} appended and "
                f"delivered) with p99 <= {TARGET_P99_MS:g} ms",
                f"appended {appended:.1f}/s, delivered {delivered:,.0f}/s of {offered:,.0f}, "
                f"p99 {p99:.1f} ms",
            )
        )
    if "baseline.ratio" in m:
        found.append(
            Verdict(
                m["baseline.ratio"] >= TARGET_RATIO,
                f"PostgreSQL append throughput >= {TARGET_RATIO:.0%} of raw batched inserts",
                f"{m['baseline.threadline_per_s']:,.0f} / {m['baseline.raw_per_s']:,.0f} "
                f"events/s = {m['baseline.ratio']:.0%}",
            )
        )
    bad = sum(
        m.get(f"{label}.{n}.violations", 0.0)
        for label in config.deployments
        for n in config.subscribers
    )
    found.append(
        Verdict(
            bad == 0,
            "every subscriber got every event exactly once, in order (every case)",
            f"{bad:.0f} violations (gaps + duplicates + reordered + missing)",
        )
    )
    return found


def _per_process(m: Metrics, prefix: str, key: str, processes: int, fmt: str) -> str:
    values = [m.get(f"{prefix}.p{index}.{key}") for index in range(1, processes + 1)]
    return " / ".join("-" if value is None else format(value, fmt) for value in values)


def report(result: dict[str, Any]) -> str:
    config, m, env = result["config"], result["median"], result["environment"]
    rows = []
    for n in config["subscribers"]:
        for label in config["deployments"]:
            p = f"{label}.{n}"
            if f"{p}.p99" not in m:
                continue
            processes = DEPLOYMENTS[label].processes
            violations = m[f"{p}.violations"]
            rows.append(
                [
                    f"{label} x{n}",
                    count(m[f"{p}.events"]),
                    f"{m[f'{p}.appended_per_s']:.1f}",
                    count(m[f"{p}.delivered_per_s"]),
                    ms(m[f"{p}.p50"]),
                    ms(m[f"{p}.p99"]),
                    ms(m[f"{p}.max"]),
                    _per_process(m, p, "p99", processes, ".1f"),
                    "yes" if violations == 0 else f"NO ({violations:.0f})",
                    ms(m[f"{p}.append_p50"]),
                    _per_process(m, p, "cpus", processes, ".2f"),
                    f"{m[f'{p}.postgres_cpus']:.2f}",
                    f"{m[f'{p}.client_cpus']:.2f}",
                    f"{m[f'{p}.other_cpus']:.2f}",
                    f"{m[f'{p}.load_before']:.2f} / {m[f'{p}.load_after']:.2f}",
                ]
            )
    baseline = _baseline(m, config) if "baseline.ratio" in m else []
    lines = [
        f"threadline cluster benchmark: 1 conversation, ~{config['event_bytes']} B events "
        f"appended on process 1 at {config['rate']:g}/s for {config['seconds']:g} s; "
        f"subscribers ({TRANSPORTS[config.get('transport', 'ws')]}) spread evenly over the "
        f"processes; "
        f"median of {len(result['runs'])} run(s)",
        f"{environment_line(env)}; asyncpg {env['asyncpg']}, PostgreSQL {env['postgresql']}",
        "deployments: " + "; ".join(f"{k} = {DEPLOYMENTS[k].title}" for k in config["deployments"]),
        "",
        render(
            "(a) live delivery: append -> receive latency in ms (all subscribers, then p99 "
            "by process); append = process 1's storage.append call, p50 ms; CPUs = cores "
            "busy over the case (server processes, PostgreSQL, the client processes, "
            "everything else on the machine); load = 1-minute load average",
            HEADER,
            rows,
        ),
        "",
        *baseline,
        *target_lines(result["targets"]),
    ]
    return "\n".join(lines)


def _baseline(m: Metrics, config: dict[str, Any]) -> list[str]:
    ours = [
        "threadline append",
        count(m["baseline.threadline_per_s"]),
        count(m["baseline.commits"]),
        f"{m['baseline.mean_batch']:.1f}",
        count(m["baseline.max_batch"]),
        f"{m['baseline.ratio']:.0%}",
        f"{m['baseline.threadline_cpus']:.2f}",
        f"{m['baseline.threadline_postgres_cpus']:.2f}",
    ]
    raw = ["raw batched inserts", count(m["baseline.raw_per_s"]), "", "", "", ""]
    raw += [f"{m['baseline.raw_cpus']:.2f}", f"{m['baseline.raw_postgres_cpus']:.2f}"]
    title = (
        f"(b) append throughput: threadline's PostgresStorage.append with "
        f"{config['appenders']} concurrent appenders over {config['conversations']} "
        f"conversations for {config['append_seconds']:g} s, next to bare batched INSERT ... "
        f"SELECT FROM unnest of the same batch sizes, back to back; CPUs = cores busy "
        f"meanwhile (the appending process, PostgreSQL)"
    )
    return [
        render(title, BASELINE_HEADER, [ours, raw]),
        f"  load average before / after: {m['baseline.load_before']:.2f} / "
        f"{m['baseline.load_after']:.2f}",
        "",
    ]
