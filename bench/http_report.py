"""The target and the printed report of `bench/http.py`, from its result."""

from __future__ import annotations

from typing import Any

from bench.common import Metrics, Verdict, count, environment_line, ms, ratio, render, target_lines
from bench.http_clients import PAGE
from bench.http_servers import TARGETS


def verdicts(m: Metrics) -> list[Verdict]:
    p50 = m["ours.raw.p50"]
    return [Verdict(p50 <= 2, "HTTP page of 100 p50 <= 2 ms (threadline serve)", f"{p50:.2f} ms")]


def report(result: dict[str, Any]) -> str:
    config, m = result["config"], result["median"]
    rows = []
    for target in TARGETS:
        p = target.label
        if f"{p}.raw.p50" not in m:
            continue
        rows.append(
            [
                p,
                ms(m[f"{p}.raw.p50"]),
                ms(m[f"{p}.raw.p99"]),
                count(m[f"{p}.raw.rate"]),
                ms(m[f"{p}.httpx.p50"]),
                ms(m[f"{p}.httpx.p99"]),
                count(m[f"{p}.load.rate"]),
                ms(m[f"{p}.load.p50"]),
                ms(m[f"{p}.load.p99"]),
                f"{m[f'{p}.load.server_us']:.0f}",
                f"{m[f'{p}.load.other_cpus']:.2f}",
                f"{m[f'{p}.rss_idle_mib']:.1f}",
                f"{m[f'{p}.rss_mib']:.1f}",
                ratio(m[f"{p}.raw.p50"], m.get("bare.raw.p50")) if p != "bare" else "",
                ratio(m[f"{p}.load.rate"], m.get("bare.load.rate")) if p != "bare" else "",
            ]
        )
    concurrency = config["concurrency"]
    header = ["", "p50", "p99", "req/s", "httpx p50", "httpx p99", f"req/s x{concurrency}", "p50",
              "p99", "srv µs/req", "others", "RSS idle", "RSS after", "p50/bare",
              "req/s/bare"]  # fmt: skip
    return "\n".join(
        [
            f"threadline HTTP benchmark: GET events page of {PAGE} from a conversation of "
            f"{config['events']:,} events (~{config['event_bytes']:.0f} B each), random "
            f"start_id; median of {len(result['runs'])} run(s)",
            environment_line(result["environment"]),
            "servers: " + "; ".join(f"{t.label} = {t.title}" for t in TARGETS),
            "",
            render(
                f"latency in ms: one sequential client ({config['requests']:,} requests, plain "
                f"socket; httpx.Client {config['requests'] // 2:,}), then {concurrency} "
                f"keep-alive connections for {config['seconds']:g} s from another process; "
                "server RSS in MiB idle (started, no request yet) and after the load; others = "
                "CPUs busy with other processes of the machine during the load (noise)",
                header,
                rows,
            ),
            "",
            *target_lines(result["targets"]),
        ]
    )
