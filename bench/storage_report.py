"""The targets and the printed report of `bench/storage.py`, from its result."""

from __future__ import annotations

from typing import Any

from bench.common import Metrics, Verdict, count, ms, ratio, render, target_lines
from bench.storage_baseline import SEARCH_LIMIT, Comparer
from bench.storage_dataset import LOAD_BATCH, LOAD_TASKS
from bench.storage_events import COMMON_WORD, RARE_WORDS
from bench.storage_reads import FEW
from bench.storage_writes import RAW_BATCH, WRITERS

PAGE_LABELS = {
    "none": "no filter",
    "run": 'include_types=["run"]',
    "CmdRunAction": 'include_types=["CmdRunAction"]',
    "text": f'query="{COMMON_WORD}" (~10%)',
    "rare": f'query="{RARE_WORDS[0]}" (~0.01%)',
}
COUNT_LABELS = {"none": "no filter (raw: count(*))", "run": 'include_types=["run"]'}
SEARCH_LABELS = {
    "common": f'"{COMMON_WORD}" (~10% of events)',
    "moderate": "a word in ~1% of events",
    "rare": "a word in ~0.01% of events",
    "moderate_one": "a ~1% word, conversation_ids=[1]",
    "moderate_few": f"a ~1% word, conversation_ids=[{FEW}]",
}
COMPARED = [f"{variant} {p}" for variant in ("ours", "aio", "sqlite3") for p in ("p50", "p99")]
COMPARED.append("ours/aio p99")


def verdicts(m: Metrics, big_label: str) -> list[Verdict]:
    raw, fts = m["raw.insert.rate"], m["append.hundred.rate_fts"]
    found = [
        Verdict(
            fts >= 0.5 * raw,
            f"append incl. FTS >= 50% of raw batched insert ({WRITERS} writers)",
            f"{fts:,.0f}/s = {fts / raw:.0%} of {raw:,.0f}/s",
        ),
        Verdict(
            m["append.hundred.p99"] <= 10,
            f"append p99 <= 10 ms with {WRITERS} concurrent writers",
            f"{m['append.hundred.p99']:.2f} ms",
        ),
    ]
    for scope, scope_label in _scopes(big_label):
        for name, label in PAGE_LABELS.items():
            ours, bare = m[f"page.{scope}.{name}.ours.p99"], m[f"page.{scope}.{name}.aiosqlite.p99"]
            found.append(
                Verdict(
                    ours <= 1.5 * bare and ours < 5,
                    f"page p99 <= 1.5x bare aiosqlite and < 5 ms: {scope_label}, {label}",
                    f"{ours:.2f} ms = {ours / bare:.2f}x",
                )
            )
    for scope, scope_label in _scopes(big_label):
        p99 = m[f"page.{scope}.rare.ours.p99"]
        found.append(
            Verdict(p99 <= 5, f"rare-word text query p99 <= 5 ms: {scope_label}", f"{p99:.2f} ms")
        )
    for name in ("moderate_one", "moderate_few"):
        p99 = m[f"search.{name}.ours.p99"]
        found.append(
            Verdict(p99 <= 5, f"search_all p99 <= 5 ms: {SEARCH_LABELS[name]}", f"{p99:.2f} ms")
        )
    if "delete.pause.max" in m:
        pause = m["delete.pause.max"]
        found.append(
            Verdict(
                pause <= 10,
                f"no append waits > 10 ms while a {m['delete.events']:,.0f}-event "
                "conversation is deleted",
                f"longest {pause:.2f} ms",
            )
        )
    for name, label in COUNT_LABELS.items():
        p99 = m[f"count.big.{name}.ours.p99"]
        found.append(Verdict(p99 < 2, f"count p99 < 2 ms: {big_label}, {label}", f"{p99:.2f} ms"))
    return found


def report(result: dict[str, Any]) -> str:
    config, m, facts = result["config"], result["median"], result["dataset"]
    big_label = f"{config['big_conversation'] // 1000}k-event conversation"
    load = {key: value for key, value in facts.items() if isinstance(value, float)}
    env = result["environment"]
    lines = [
        f"threadline storage benchmark: {config['events']:,} events in "
        f"{config['conversations']:,} conversations + 1 of {config['big_conversation']:,}; "
        f"median of {len(result['runs'])} run(s); 1-min load average after each run: "
        + ", ".join(f"{run['loadavg']:.1f}" for run in result["runs"]),
        f"{env['machine']}, {env['cpus']} CPUs, Python {env['python']}, SQLite {env['sqlite']}, "
        f"aiosqlite {env['aiosqlite']}; events {config['event_bytes']:.0f} B + text "
        f"{config['text_bytes']:.0f} B on average; commit {env['commit']}",
        "",
        render(
            "(a) raw limits (WAL, synchronous=NORMAL)",
            ["", "events/s", "p50 ms", "p99 ms"],
            [
                [f"sqlite3 executemany, {RAW_BATCH} rows/txn", _rate(m, "raw.insert.rate"), "", ""],
                ["page of 100, bare aiosqlite", "", *_percentiles(m, "raw.page.aiosqlite")],
                ["page of 100, plain sqlite3", "", *_percentiles(m, "raw.page.sqlite3")],
            ],
        ),
        "",
        render(
            "(b) SqliteStorage.append (lag: how long wait_indexed() takes while appending)",
            ["", "events/s", "incl. FTS", "p50 ms", "p99 ms", "lag p50", "lag p99", "catch-up ms"],
            [
                _appends(m, "1 conversation, sequential awaits", "append.one"),
                _appends(m, f"{WRITERS} conversations, concurrent", "append.hundred"),
                _appends(load, f"load: append_many x{LOAD_BATCH}, {LOAD_TASKS} tasks", "load"),
            ],
        ),
        "",
        render(
            "(c) search_events, page of 100 from a random start_id (ms)",
            ["", *COMPARED],
            _scoped_rows(m, "page", PAGE_LABELS, big_label),
        ),
        "",
        render(
            "(d) count_events (ms)",
            ["", *COMPARED],
            _scoped_rows(m, "count", COUNT_LABELS, big_label),
        ),
        "",
        render(
            f"(e) search_all, limit {SEARCH_LIMIT}, newest first (ms)",
            ["", *COMPARED],
            [_compared(m, label, f"search.{name}") for name, label in SEARCH_LABELS.items()],
        ),
        "",
        render(
            "(f) deleting a conversation while another appends event by event (ms)",
            ["", "events", "call", "all gone", "appends", "p50", "p99", "max"],
            [
                [
                    "before the delete",
                    *([""] * 4),
                    *_percentiles(m, "delete.before"),
                    _ms(m, "delete.before.max"),
                ],
                [
                    "from the call until its events are gone",
                    count(m.get("delete.events")),
                    _ms(m, "delete.call_ms"),
                    _ms(m, "delete.gone_ms"),
                    count(m.get("delete.appends")),
                    *_percentiles(m, "delete.during"),
                    _ms(m, "delete.pause.max"),
                ],
            ],
        ),
        "",
        *target_lines(result["targets"]),
    ]
    return "\n".join(lines)


def _scopes(big_label: str) -> tuple[tuple[str, str], ...]:
    """(scope, its label) of `bench.storage_reads.SCOPES`."""
    return (("typical", "typical"), ("big", big_label))


def _scoped_rows(m: Metrics, kind: str, labels: dict[str, str], big_label: str) -> list[list[str]]:
    return [
        _compared(m, f"{scope_label}, {label}", f"{kind}.{scope}.{name}")
        for scope, scope_label in _scopes(big_label)
        for name, label in labels.items()
    ]


def _appends(m: Metrics, label: str, prefix: str) -> list[str]:
    rates = [_rate(m, f"{prefix}.rate"), _rate(m, f"{prefix}.rate_fts")]
    lags = [*_percentiles(m, f"{prefix}.lag"), _ms(m, f"{prefix}.catch_up")]
    return [label, *rates, *_percentiles(m, prefix), *lags]


def _percentiles(m: Metrics, prefix: str) -> list[str]:
    return [_ms(m, f"{prefix}.p50"), _ms(m, f"{prefix}.p99")]


def _ms(m: Metrics, key: str) -> str:
    return ms(m.get(key))


def _rate(m: Metrics, key: str) -> str:
    return count(m.get(key))


def _compared(m: Metrics, label: str, prefix: str) -> list[str]:
    cells = [label]
    for variant in Comparer.VARIANTS:
        cells += _percentiles(m, f"{prefix}.{variant}")
    cells.append(ratio(m.get(f"{prefix}.ours.p99"), m.get(f"{prefix}.aiosqlite.p99")))
    return cells
