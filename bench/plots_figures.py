"""The figures of `bench.plots`, one function per kind of result: each takes the result
(as its benchmark wrote it) and a note for the title, and returns a matplotlib figure.

matplotlib is imported inside each function: the benchmarks import `bench.plots`, and
must run (and the tests pass) without it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from matplotlib.axes import Axes
    from matplotlib.figure import Figure

COLOURS = {"sio": "tab:blue", "ws": "tab:orange", "bare": "black", "sio-lib": "tab:purple"}
TITLES = {
    "sio": "threadline Socket.IO",
    "ws": "threadline WebSocket",
    "bare": "bare websockets.broadcast",
    "sio-lib": "threadline Socket.IO (python-socketio client)",
}
HELD = 0.95
"""A rate case held its offered rate when it appended at least this share of it."""


def title(result: dict[str, Any], what: str, note: str) -> str:
    """What was measured, then where, when and how loaded the machine was."""
    env = result.get("environment", {})
    start = env.get("load_start", [result.get("load", {}).get("start")])[0]
    end = env.get("load_end", [result.get("load", {}).get("end")])[0]
    load = (
        f"1-min load average {start:.2f} at start, {end:.2f} at end"
        if start is not None and end is not None
        else "load average not recorded"
    )
    when = env.get("finished", "date not recorded").replace("T", " ").replace("+00:00", " UTC")
    machine = f"{env.get('host', '?')}: {env.get('cpus', '?')} CPUs ({env.get('cpu_model', '?')})"
    lines = [what, f"{machine}; finished {when}", f"{load}; commit {env.get('commit', '?')}"]
    return "\n".join([*lines, note] if note else lines)


def _axes(count: int, width: float = 6.0) -> tuple[Figure, list[Axes]]:
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, count, figsize=(width * count, 5.2), layout="constrained")
    return figure, list(axes) if count > 1 else [axes]


def _log_x(axes: Axes, ticks: Sequence[int], label: str) -> None:
    from matplotlib.ticker import FixedLocator, FuncFormatter, NullLocator

    axes.set_xscale("log")
    axes.xaxis.set_major_locator(FixedLocator(list(ticks)))
    axes.xaxis.set_minor_locator(NullLocator())
    axes.xaxis.set_major_formatter(FuncFormatter(lambda value, _: _short(value)))
    axes.set_xlabel(label)
    axes.grid(True, which="both", alpha=0.3)


def _log_y(axes: Axes) -> None:
    """A log y axis (set after plotting) labelled in plain numbers: 1, 10, 100, and
    between them 2 and 5 (and 3 when the data spans little more than a decade)."""
    from matplotlib.ticker import FuncFormatter

    axes.set_yscale("log")
    low, high = axes.get_ylim()
    digits = "235" if high / low < 30 else "25"
    axes.yaxis.set_major_formatter(FuncFormatter(lambda value, _: f"{value:g}"))
    axes.yaxis.set_minor_formatter(
        FuncFormatter(lambda value, _: f"{value:g}" if f"{value:.0e}"[0] in digits else "")
    )


def _short(value: float) -> str:
    if value >= 1_000_000:
        return f"{value / 1_000_000:g}M"
    return f"{value / 1000:g}k" if value >= 1000 else f"{value:g}"


def fanout(result: dict[str, Any], note: str) -> Figure:
    """Delivery p99 at the offered rate and server CPU per delivery (at the offered rate,
    solid; back to back, dotted) versus subscribers, one colour per server."""
    from matplotlib.lines import Line2D

    config, m = result["config"], result["median"]
    subscribers = config["subscribers"]
    figure, (latency, cpu) = _axes(2)
    for label in config["servers"]:
        colour = COLOURS.get(label, "tab:green")
        xs = [n for n in subscribers if f"{label}.{n}.rate.p99" in m]
        p99 = [m[f"{label}.{n}.rate.p99"] for n in xs]
        held = [m[f"{label}.{n}.rate.appended_per_s"] >= HELD * config["rate"] for n in xs]
        latency.plot(xs, p99, color=colour, label=TITLES.get(label, label))
        for x, y, ok in zip(xs, p99, held, strict=True):
            latency.plot(x, y, "o", color=colour, markerfacecolor=colour if ok else "white")
        for mode, style in (("rate", "-"), ("flat", ":")):
            # 0 is below what /proc's 10 ms clock ticks can tell: no point rather than -inf.
            values = [
                m.get(f"{label}.{n}.{mode}.server_us_per_delivery", math.nan) or math.nan
                for n in xs
            ]
            cpu.plot(xs, values, style, marker="o", color=colour, markersize=4)
        bad = sum(
            m.get(f"{label}.{n}.{mode}.violations", 0) for n in xs for mode in ("rate", "flat")
        )
        if bad:
            latency.annotate(
                f"{bad:.0f} lost/duplicated/reordered", (xs[-1], p99[-1]), color=colour
            )
    if "bare" in config["servers"]:
        xs = [n for n in subscribers if f"bare.{n}.rate.p99" in m]
        for axes, key in ((latency, "rate.p99"), (cpu, "rate.server_us_per_delivery")):
            doubled = [2 * m[f"bare.{n}.{key}"] for n in xs]
            axes.plot(xs, doubled, "--", color="grey", linewidth=1, label="2x bare (target)")
    for axes in (latency, cpu):
        _log_x(axes, subscribers, "subscribers of one conversation (log scale)")
        _log_y(axes)
    latency.set_ylabel(f"append -> receive p99 at {config['rate']:g} events/s offered (ms)")
    latency.set_title("delivery latency, p99")
    cpu.set_ylabel("server CPU per delivery (µs, all threads)")
    cpu.set_title("server CPU per delivery")
    handles, _ = latency.get_legend_handles_labels()
    handles += [
        Line2D([], [], marker="o", color="grey", markerfacecolor="white", linestyle="",
               label="offered rate not held (< 95 %)"),
    ]  # fmt: skip
    latency.legend(handles=handles, fontsize=8)
    cpu.legend(
        handles=[
            Line2D([], [], color="grey", label=f"at {config['rate']:g} events/s offered"),
            Line2D([], [], color="grey", linestyle=":", label="back to back"),
            Line2D([], [], color="grey", linestyle="--", linewidth=1, label="2x bare (target)"),
        ],
        fontsize=8,
    )
    runs = len(result.get("runs", [])) or 1
    what = (
        f"threadline fan-out: one conversation, ~{config['event_bytes']} B events, "
        f"{config['rate']:g} events/s offered for {config['seconds']:g} s; median of {runs} run(s)"
    )
    figure.suptitle(title(result, what, note), fontsize=9)
    return figure


def storage_sweep(result: dict[str, Any], note: str) -> Figure:
    """Append rate, append latency, page and search latency versus the log's size."""
    config, points = result["config"], result["points"]
    sizes = [point["size"] for point in points]
    m = [point["median"] for point in points]
    figure, (rates, appends, pages, searches) = _axes(4, width=4.6)
    rates.plot(sizes, [p["append.rate"] for p in m], "o-", label="append, acknowledged")
    rates.plot(sizes, [p["append.rate_fts"] for p in m], "o-", label="append, until searchable")
    loads = [point["load"].get("load.rate", math.nan) for point in points]
    rates.plot(sizes, loads, "o:", color="grey", label="append_many x100 (the load up to it)")
    rates.set_ylabel("events/s")
    rates.set_ylim(bottom=0)
    rates.set_title(f"append rate, {config['appends']:,} events\nfrom 100 concurrent writers")
    for percentile in ("p50", "p99"):
        appends.plot(sizes, [p[f"append.{percentile}"] for p in m], "o-", label=percentile)
    appends.set_ylabel("per-append latency (ms)")
    appends.set_title("append latency, 100 concurrent writers")
    for name, label in (("none", "no filter"), ("CmdRunAction", "by type"), ("rare", "rare word")):
        line = pages.plot(sizes, [p[f"page.typical.{name}.ours.p99"] for p in m], "o-", label=label)
        bare = [p[f"page.typical.{name}.aiosqlite.p99"] for p in m]
        pages.plot(sizes, bare, ":", color=line[0].get_color(), label=f"{label}, bare aiosqlite")
    pages.set_ylabel("p99 (ms)")
    _log_y(pages)
    pages.set_title(f"page of 100 events, p99\n({config['per_conversation']:,}-event conversation)")
    for name, label in (("rare", "a rare word"), ("moderate_few", "a 1% word in 3 conversations")):
        searches.plot(sizes, [p[f"search.{name}.ours.p99"] for p in m], "o-", label=label)
    searches.set_ylabel("p99 (ms)")
    _log_y(searches)
    searches.set_title("search_all, newest 20, p99")
    for axes in (rates, appends, pages, searches):
        _log_x(axes, sizes, "events in the log (log scale)")
        axes.legend(fontsize=7)
    what = (
        f"threadline storage (SQLite): one log grown to each size; {config['samples']} "
        f"samples per read; median of {config['repeats']} repeat(s) per size"
    )
    figure.suptitle(title(result, what, note), fontsize=9)
    return figure


def controller(result: dict[str, Any], note: str) -> Figure:
    """Events/s of one LLM conversation against an instant model versus its steps."""
    m = result["median"]
    steps = [k for k in result["config"]["controller"]["steps"] if f"controller.{k}.events" in m]
    figure, (axes,) = _axes(1, width=7.5)
    series = (
        ("events_per_s", "all, whole run", "o-", "tab:blue"),
        ("late_events_per_s", "all, last 10 % of steps", "o--", "tab:blue"),
        ("ours_events_per_s", "ours (model's side aside), whole run", "s-", "tab:green"),
        ("ours_late_events_per_s", "ours (model's side aside), last 10 %", "s--", "tab:green"),
    )
    for key, label, style, colour in series:
        values = [m[f"controller.{k}.{key}"] for k in steps]
        axes.plot(steps, values, style, color=colour, label=label)
    axes.axhline(1000, color="grey", linestyle=":", linewidth=1, label="1,000 events/s (target)")
    _log_x(axes, steps, "steps K of one conversation (log scale)")
    axes.set_ylabel("events logged per second")
    axes.set_ylim(bottom=0)
    axes.set_title("controller throughput versus conversation length")
    axes.legend(fontsize=8)
    runs = len(result.get("runs", [])) or 1
    what = "threadline controller: one llm conversation, instant fake model"
    what += f"; median of {runs} run(s)"
    figure.suptitle(title(result, what, note), fontsize=9)
    return figure
