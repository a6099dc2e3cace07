"""The targets and the printed report of `bench/fanout.py`, from its result."""

from __future__ import annotations

from typing import Any

from bench.common import (
    MIB,
    Metrics,
    Verdict,
    count,
    environment_line,
    ms,
    ratio,
    render,
    target_lines,
)
from bench.fanout_session import MODES, SERVERS, Config


def verdicts(m: Metrics, config: Config) -> list[Verdict]:
    found: list[Verdict] = []
    ours = [label for label in config.servers if SERVERS[label].kind == "ours"]
    biggest = max(config.subscribers)
    for label in ours:
        title = SERVERS[label].title
        if 100 in config.subscribers:
            p99 = m[f"{label}.100.rate.p99"]
            found.append(
                Verdict(p99 <= 10, f"{title}: p99 <= 10 ms at 100 subscribers", f"{p99:.2f} ms")
            )
            bare = m.get("bare.100.rate.p99")
            if bare is not None:
                found.append(
                    Verdict(
                        p99 <= 2 * bare,
                        f"{title}: p99 <= 2x bare broadcast at 100 subscribers",
                        f"{p99:.2f} ms = {p99 / bare:.2f}x of {bare:.2f} ms",
                    )
                )
        bad = sum(m[f"{label}.{n}.{mode}.violations"] for n in config.subscribers for mode in MODES)
        found.append(
            Verdict(
                bad == 0,
                f"{title}: every subscriber got every event exactly once, in order",
                f"{bad:.0f} violations (gaps + duplicates + reordered + missing)",
            )
        )
        per = m[f"{label}.{biggest}.kib_per_subscriber"]
        found.append(
            Verdict(
                per <= 64,
                f"{title}: idle memory per subscriber <= 64 KiB ({biggest})",
                f"{per:.1f} KiB",
            )
        )
        idle = max(m[f"{label}.{n}.rss_idle_mib"] for n in config.subscribers)
        found.append(
            Verdict(
                idle * MIB < 100e6,
                f"{title}: server RSS idle < 100 MB",
                f"{idle * MIB / 1e6:.1f} MB",
            )
        )
    return found


def report(result: dict[str, Any]) -> str:
    config, m = result["config"], result["median"]
    servers, subscribers = config["servers"], config["subscribers"]
    delivery_rows = []
    for n in subscribers:
        for mode in MODES:
            for label in servers:
                p = f"{label}.{n}.{mode}"
                if f"{p}.p99" not in m:
                    continue
                bare = f"bare.{n}.{mode}"
                ours = SERVERS[label].kind == "ours" and f"{bare}.p99" in m
                delivery_rows.append(
                    [
                        f"{label} x{n} {mode}",
                        count(m[f"{p}.events"]),
                        count(m[f"{p}.appended_per_s"]),
                        count(m[f"{p}.delivered_per_s"]),
                        ms(m[f"{p}.p50"]),
                        ms(m[f"{p}.p99"]),
                        ms(m[f"{p}.max"]),
                        "yes" if m[f"{p}.violations"] == 0 else f"NO ({m[f'{p}.violations']:.0f})",
                        ms(m[f"{p}.server_us_per_delivery"]),
                        ms(m[f"{p}.client_us_per_delivery"]),
                        ms(m[f"{p}.append_p50"]),
                        f"{m[f'{p}.other_cpus']:.2f}",
                        ratio(m[f"{p}.p50"], m.get(f"{bare}.p50")) if ours else "",
                        ratio(m[f"{p}.p99"], m.get(f"{bare}.p99")) if ours else "",
                        ratio(m[f"{p}.delivered_per_s"], m.get(f"{bare}.delivered_per_s"))
                        if ours
                        else "",
                        ratio(
                            m[f"{p}.server_us_per_delivery"],
                            m.get(f"{bare}.server_us_per_delivery"),
                        )
                        if ours
                        else "",
                    ]
                )
    memory_rows = []
    for n in subscribers:
        for label in servers:
            p = f"{label}.{n}"
            if f"{p}.rss_idle_mib" not in m:
                continue
            ours = SERVERS[label].kind == "ours" and f"bare.{n}.kib_per_subscriber" in m
            memory_rows.append(
                [
                    f"{label} x{n}",
                    f"{m[f'{p}.rss_idle_mib']:.1f}",
                    f"{m[f'{p}.rss_connected_mib']:.1f}",
                    f"{m[f'{p}.kib_per_subscriber']:.1f}",
                    f"{m[f'{p}.rss_peak_mib']:.0f}",
                    ratio(m[f"{p}.kib_per_subscriber"], m.get(f"bare.{n}.kib_per_subscriber"))
                    if ours
                    else "",
                    f"{m[f'{p}.connect_s']:.2f}",
                ]
            )
    flat_range = config["flat_events"]
    lines = [
        f"threadline fan-out benchmark: 1 conversation, ~{config['event_bytes']} B events; "
        f"rate = {config['rate']:g}/s for {config['seconds']:g} s, flat = back to back, "
        f"{config['flat_deliveries']:,} deliveries / N events "
        f"(within {flat_range[0]}-{flat_range[1]}); "
        f"median of {len(result['runs'])} run(s)",
        environment_line(result["environment"]),
        "servers: " + "; ".join(f"{label} = {SERVERS[label].title}" for label in servers),
        "",
        render(
            "(a) live delivery: append -> receive latency in ms; CPU of the server and of all "
            "client processes in µs per delivery; append = the storage.append call (bare: "
            "build + broadcast) in ms; others = CPUs busy with other processes of the machine "
            "(noise)",
            [
                "",
                "events",
                "appended/s",
                "delivered/s",
                "p50",
                "p99",
                "max",
                "exactly once",
                "srv µs/dlv",
                "cli µs/dlv",
                "append",
                "others",
                "p50/bare",
                "p99/bare",
                "dlv/bare",
                "µs/bare",
            ],
            delivery_rows,
        ),
        "",
        render(
            "(b) server memory, MiB: RSS idle (after warm-up), with N idle subscribers, and "
            "its peak over the session (VmHWM)",
            ["", "RSS idle", "RSS N subs", "KiB/sub", "peak RSS", "KiB/sub vs bare", "connect s"],
            memory_rows,
        ),
        "",
        *target_lines(result["targets"]),
    ]
    return "\n".join(lines)
