"""Storage benchmark: the embedded SQLite backend against SQLite's raw limits, in one run.

Run by hand, never by the tests (from the repository root):

    python bench/storage.py [--events N] [--conversations M] [--runs 3]
                            [--out bench/results/storage.json] [--data-dir DIR] [--keep]

What one run measures, on the same machine:

(a) raw limits: sqlite3 ``executemany`` of 100 rows per transaction (WAL,
    synchronous=NORMAL) into the ``events`` table of schema migration 1, and the page query
    `search_events` issues, through bare aiosqlite and plain sqlite3, on that data;
(b) `SqliteStorage.append` from 1 conversation (sequential awaits) and from 100
    concurrent ones: rate, per-append latency, the rate until everything is also
    searchable (``wait_indexed``), and how far the full-text index trails;
(c) `search_events` pages of 100 over a big dataset (``--events`` in ``--conversations``
    plus one ``--big-conversation``), each compared with the identical SQL through bare
    aiosqlite and plain sqlite3 on the same file;
(d) `count_events`; (e) cross-conversation `search_all`.

The big dataset is loaded once, through `append_many` from 100 concurrent tasks (itself a
throughput figure), and reused by every run; the append measurements use fresh stores.
With ``--runs R`` every figure is the median of R runs and the targets are checked on the
medians. Database files are read in full right before each read measurement: this VM
pages out file cache left idle for about a minute. ``--data-dir`` with ``--keep`` keeps
the big dataset, and a later run with the same ``--data-dir`` and sizes reuses it.

Connections of the bare baselines use the store's pragmas (WAL, synchronous=NORMAL,
cache_size 64 MiB). Latencies are wall-clock per call, p50/p99 in milliseconds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import gc
import os
import platform
import random
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass
from functools import partial
from itertools import islice
from pathlib import Path
from typing import Any, TypeVar

# Run as `python bench/storage.py`, sys.path[0] is bench/, whose modules would shadow the
# `storage` package measured here (and `http` of the standard library): search the
# repository root instead. Run as `python -m bench.storage`, sys.path[0] is the root.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import aiosqlite
import orjson
import pydantic

from events import (
    AgentStateChangedObservation,
    AgentThinkAction,
    CmdOutputObservation,
    CmdRunAction,
    EventBase,
    EventFilter,
    FileEditAction,
    FileEditObservation,
    FileReadAction,
    FileReadObservation,
    MessageAction,
    ToolCallMetadata,
)
from events.actions import EditArgs, MessageArgs, ReadArgs, RunArgs, ThinkArgs
from events.observations import (
    AgentStateChangedExtras,
    CmdOutputExtras,
    CmdOutputMetadata,
    FileEditExtras,
    FileReadExtras,
)
from storage import NewConversation
from storage.records import now_micros, prepare, stamp
from storage.sqlite import SqliteStorage
from storage.sqlite.queries import count_query, fts_match_expression, page_query, search_all_query
from storage.sqlite.schema import LOG_MIGRATIONS, migrate_log
from storage.sqlite.store import LOG_FILE, SEARCH_FILE
from storage.sqlite.writer import INSERT_EVENT

T = TypeVar("T")
Metrics = dict[str, float]

ROOT = Path(__file__).resolve().parents[1]

PAGE = 100
RAW_BATCH = 100
WRITERS = 100
LOAD_TASKS = 100
LOAD_BATCH = 100
SEARCH_LIMIT = 20
CACHE_KIB = 65536
LAG_SAMPLE_INTERVAL = 0.05

# -- realistic events ------------------------------------------------------------------

COMMON_WORD = "timeout"
"""In about 10% of events: the text query of the page filter."""
MODERATE_WORDS = ("deadlock", "segfault", "regression", "flakiness")
"""Each in about 1% of events."""
RARE_WORDS = ("heisenbug", "bitrot", "mandelbug", "yakshave")
"""Each in about 0.01% of events."""
COMMON_RATE, MODERATE_RATE, RARE_RATE = 0.10, 0.01, 0.0001

MODULES = (
    "auth", "billing", "cache", "cli", "config", "events", "models", "parser", "queue",
    "router", "schema", "server", "storage", "utils", "worker",
)  # fmt: skip
FUNCTIONS = (
    "load_config", "parse_args", "handle_request", "flush", "validate", "serialize",
    "connect", "migrate", "render", "dispatch", "resolve_path", "close",
)  # fmt: skip
WORDS = (
    "the", "test", "fails", "because", "value", "is", "missing", "from", "response", "need",
    "to", "check", "how", "handles", "empty", "input", "before", "changing", "code", "looks",
    "like", "function", "returns", "wrong", "type", "when", "called", "with", "list",
    "instead", "of", "dict", "fix", "it", "update", "tests", "accordingly", "run", "again",
    "see", "whether", "passes", "now", "error", "comes", "import", "cycle", "between",
    "modules", "add", "guard", "for", "none", "case", "log", "message", "unclear", "rename",
    "variable", "make", "intent", "explicit", "cursor", "page", "batch", "commit", "schema",
)  # fmt: skip
COMMANDS = (
    "pytest tests/test_{m}.py -x -q",
    "git status --short",
    "git diff --stat src/{m}",
    "ls -la src/{m}",
    'grep -rn "def {f}" src/',
    "python -m {m} --check",
    "ruff check src/{m}",
    "cat src/{m}/__init__.py",
)
OUTPUT_LINES = (
    "tests/test_{m}.py::test_{f} PASSED",
    "FAILED tests/test_{m}.py::test_{f} - AssertionError: assert {n} == {k}",
    "===== {n} passed, {k} failed in {n}.{k}s =====",
    " M src/{m}/{f}.py",
    "src/{m}/core.py:{n}:    def {f}(self, value):",
    "-rw-r--r-- 1 openhands openhands {n}{k} Nov 25 14:05 {f}.py",
    "src/{m}/core.py:{n}:{k}: F401 `typing.Any` imported but unused",
)
CODE_LINES = (
    "def {f}(value: dict[str, Any]) -> list[str]:",
    '    """Return the {m} entries for value."""',
    "    if not value:",
    "        return []",
    "    result = [item for item in value if item]",
    "    logger.debug('{f}: %d items', len(result))",
    "    return sorted(result)",
    "from {m}.core import {f}",
)
STEPS = ("run", "read", "edit", "think", "agent_message", "user_message", "state")
STEP_WEIGHTS = (30, 12, 10, 12, 5, 3, 4)


class ConversationScript:
    """One conversation's events as an OpenHands agent produces them: think, run a
    command and read its output, read and edit files, talk to the user.

    Every event carries one free-text note; the marker words are mixed into notes at their
    rates, and ``markers`` counts them so full-text results can be checked exactly.
    """

    def __init__(self, rng: random.Random, markers: Counter[str]) -> None:
        self._rng = rng
        self._markers = markers
        self._host = f"runtime-{rng.getrandbits(24):06x}"

    def events(self, count: int) -> Iterator[EventBase]:
        produced = 0
        while produced < count:
            step = self._step(produced, room=count - produced)
            yield from step
            produced += len(step)

    def _step(self, first_id: int, room: int) -> list[EventBase]:
        step = self._rng.choices(STEPS, STEP_WEIGHTS)[0] if room > 1 else "think"
        if step == "run":
            return self._run(first_id)
        if step == "read":
            return self._read(first_id)
        if step == "edit":
            return self._edit(first_id)
        if step == "think":
            return [AgentThinkAction(source="agent", args=ThinkArgs(thought=self._note(16)))]
        if step == "state":
            state = self._rng.choice(("running", "awaiting_user_input"))
            extras = AgentStateChangedExtras(agent_state=state)
            return [AgentStateChangedObservation(source="environment", extras=extras)]
        source = "user" if step == "user_message" else "agent"
        return [MessageAction(source=source, args=MessageArgs(content=self._note(18)))]

    def _run(self, first_id: int) -> list[EventBase]:
        rng = self._rng
        command = self._fill(rng.choice(COMMANDS))
        exit_code = 0 if rng.random() < 0.8 else 1
        call = self._tool_call("execute_bash")
        output = "\n".join(self._fill(rng.choice(OUTPUT_LINES)) for _ in range(rng.randint(1, 3)))
        metadata = CmdOutputMetadata(
            exit_code=exit_code,
            pid=rng.randint(100, 30000),
            username="openhands",
            hostname=self._host,
            working_dir="/workspace/project",
            py_interpreter_path="/openhands/poetry/bin/python",
            suffix=f"\n[The command completed with exit code {exit_code}.]",
        )
        return [
            CmdRunAction(
                source="agent",
                args=RunArgs(command=command, thought=self._note(8)),
                tool_call_metadata=call,
            ),
            CmdOutputObservation(
                source="agent",
                cause=first_id,
                content=f"{output}\n{self._note(5)}",
                extras=CmdOutputExtras(command=command, metadata=metadata),
            ),
        ]

    def _read(self, first_id: int) -> list[EventBase]:
        path = self._fill("/workspace/project/src/{m}/{f}.py")
        call = self._tool_call("str_replace_editor")
        code = "\n".join(self._fill(line) for line in self._rng.sample(CODE_LINES, 3))
        return [
            FileReadAction(
                source="agent",
                args=ReadArgs(path=path, thought=self._note(6)),
                tool_call_metadata=call,
            ),
            FileReadObservation(
                source="agent",
                cause=first_id,
                content=f"{code}\n# {self._note(4)}",
                extras=FileReadExtras(path=path),
            ),
        ]

    def _edit(self, first_id: int) -> list[EventBase]:
        path = self._fill("/workspace/project/src/{m}/{f}.py")
        old, new = (self._fill(line) for line in self._rng.sample(CODE_LINES, 2))
        call = self._tool_call("str_replace_editor")
        args = EditArgs(
            path=path, command="str_replace", old_str=old, new_str=new, thought=self._note(6)
        )
        return [
            FileEditAction(source="agent", args=args, tool_call_metadata=call),
            FileEditObservation(
                source="agent",
                cause=first_id,
                content=f"The file {path} has been edited. {self._note(4)}",
                extras=FileEditExtras(path=path, prev_exist=True, diff=f"-{old}\n+{new}"),
            ),
        ]

    def _note(self, words: int) -> str:
        rng = self._rng
        parts = [" ".join(rng.choices(WORDS, k=words)).capitalize() + "."]
        if rng.random() < COMMON_RATE:
            parts.append(f"Hit a {COMMON_WORD} after {rng.randint(5, 300)}s.")
            self._markers[COMMON_WORD] += 1
        if rng.random() < MODERATE_RATE * len(MODERATE_WORDS):
            word = rng.choice(MODERATE_WORDS)
            parts.append(f"Smells like a {word} in {rng.choice(MODULES)}.")
            self._markers[word] += 1
        if rng.random() < RARE_RATE * len(RARE_WORDS):
            word = rng.choice(RARE_WORDS)
            parts.append(f"Could this be a {word}?")
            self._markers[word] += 1
        return " ".join(parts)

    def _fill(self, template: str) -> str:
        rng = self._rng
        return template.format(
            m=rng.choice(MODULES),
            f=rng.choice(FUNCTIONS),
            n=rng.randint(1, 400),
            k=rng.randint(0, 9),
        )

    def _tool_call(self, function: str) -> ToolCallMetadata:
        return ToolCallMetadata(
            function_name=function, tool_call_id=f"toolu_{self._rng.getrandbits(96):024x}"
        )


def script(seed: int, index: int, markers: Counter[str]) -> ConversationScript:
    return ConversationScript(random.Random(f"{seed}:{index}"), markers)


def chunks(items: Iterable[T], size: int) -> Iterator[list[T]]:
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


# -- timing ----------------------------------------------------------------------------


def latency(prefix: str, samples: Sequence[float]) -> Metrics:
    """p50 and p99 of durations in seconds, as ``{prefix}.p50`` / ``.p99`` in ms."""
    if len(samples) < 2:
        return {f"{prefix}.{name}": value * 1e3 for name in ("p50", "p99") for value in samples}
    cuts = statistics.quantiles(samples, n=100, method="inclusive")
    return {f"{prefix}.p50": cuts[49] * 1e3, f"{prefix}.p99": cuts[98] * 1e3}


def warm(directory: Path) -> float:
    """Read every database file of ``directory`` in full; returns the seconds it took."""
    start = time.perf_counter()
    buffer = bytearray(1 << 24)
    for path in sorted(directory.glob("*.db*")):
        with path.open("rb", buffering=0) as file:
            while file.readinto(buffer):
                pass
    return time.perf_counter() - start


async def bare_aiosqlite(directory: Path) -> aiosqlite.Connection:
    """A reader connection set up as the store's are, without the store around it."""
    connection = await aiosqlite.connect(directory / LOG_FILE, isolation_level=None)
    await _reader_pragmas(connection.execute, directory)
    return connection


def bare_sqlite3(directory: Path) -> sqlite3.Connection:
    connection = sqlite3.connect(directory / LOG_FILE, isolation_level=None)
    _reader_pragmas_sync(connection, directory)
    return connection


async def _reader_pragmas(execute: Callable[..., Awaitable[Any]], directory: Path) -> None:
    await execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    await execute("PRAGMA query_only = ON")
    if (directory / SEARCH_FILE).exists():
        await execute("ATTACH DATABASE ? AS search", (str(directory / SEARCH_FILE),))


def _reader_pragmas_sync(connection: sqlite3.Connection, directory: Path) -> None:
    connection.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
    connection.execute("PRAGMA query_only = ON")
    if (directory / SEARCH_FILE).exists():
        connection.execute("ATTACH DATABASE ? AS search", (str(directory / SEARCH_FILE),))


def page_sql(
    conversation_id: str, start_id: int, event_filter: EventFilter | None
) -> tuple[str, tuple[Any, ...]]:
    """The SQL `search_events` runs for a forward page of `PAGE` from ``start_id``."""
    sql, params = page_query(
        conversation_id=conversation_id,
        start_id=start_id,
        end_id=None,
        reverse=False,
        filter=event_filter,
        limit=PAGE + 1,
    )
    return sql, tuple(params)


def count_sql(
    conversation_id: str, event_filter: EventFilter | None
) -> tuple[str, tuple[Any, ...]]:
    sql, params = count_query(
        conversation_id=conversation_id, start_id=0, end_id=None, filter=event_filter
    )
    return sql, tuple(params)


def search_sql(word: str, conversation_ids: list[str] | None) -> tuple[str, tuple[Any, ...]]:
    """The SQL of `search_all` for the first `SEARCH_LIMIT` hits."""
    sql, params = search_all_query(
        match=fts_match_expression(word),
        conversation_ids=conversation_ids,
        owner=None,
        before_seq=None,
        limit=SEARCH_LIMIT + 1,
    )
    return sql, tuple(params)


@dataclass(frozen=True, slots=True)
class Probe:
    """One question asked of the store and, as the identical SQL, of bare SQLite.

    ``ours`` returns the answer in the same comparable form ``expect`` makes of the rows.
    """

    ours: Callable[[], Awaitable[list[Any]]]
    sql: str
    params: tuple[Any, ...]
    expect: Callable[[list[Any]], list[Any]]


class Comparer:
    """Times probes through the store, bare aiosqlite and plain sqlite3 on one file,
    rotating which goes first, and checks that all three give the same answer."""

    VARIANTS = ("ours", "aiosqlite", "sqlite3")

    def __init__(self, aio: aiosqlite.Connection, sync: sqlite3.Connection) -> None:
        self._aio = aio
        self._sync = sync

    async def measure(
        self, prefix: str, samples: int, make_probe: Callable[[], Probe], warmup: int = 20
    ) -> Metrics:
        timings: dict[str, list[float]] = {name: [] for name in self.VARIANTS}
        gc.collect()
        for index in range(warmup + samples):
            probe = make_probe()
            answers: dict[str, list[Any]] = {}
            for offset in range(len(self.VARIANTS)):
                name = self.VARIANTS[(index + offset) % len(self.VARIANTS)]
                start = time.perf_counter()
                answers[name] = await self._ask(name, probe)
                if index >= warmup:
                    timings[name].append(time.perf_counter() - start)
            if not answers["ours"] == answers["aiosqlite"] == answers["sqlite3"]:
                raise AssertionError(f"{prefix}: answers differ for {probe.sql} {probe.params}")
        metrics: Metrics = {}
        for name, durations in timings.items():
            metrics |= latency(f"{prefix}.{name}", durations)
        return metrics

    async def _ask(self, name: str, probe: Probe) -> list[Any]:
        if name == "ours":
            return await probe.ours()
        if name == "aiosqlite":
            return probe.expect(list(await self._aio.execute_fetchall(probe.sql, probe.params)))
        return probe.expect(self._sync.execute(probe.sql, probe.params).fetchall())


# -- (a) raw limits --------------------------------------------------------------------


def raw_rows(streams: Sequence[Sequence[EventBase]]) -> list[tuple[Any, ...]]:
    """The rows the log writer would insert for ``streams`` (conversation keys 1..n),
    interleaved as concurrent conversations append them."""
    rows: list[tuple[Any, ...]] = []
    now = now_micros()
    for event_id in range(max(len(stream) for stream in streams)):
        for key, stream in enumerate(streams, start=1):
            if event_id < len(stream):
                prepared = prepare(stream[event_id])
                seq = len(rows) + 1
                data = stamp(prepared, event_id, now + seq)
                rows.append(
                    (seq, key, event_id, prepared.kind, prepared.source, now + seq,
                     prepared.hidden, prepared.text, data)
                )  # fmt: skip
    return rows


def raw_insert(directory: Path, rows: Sequence[tuple[Any, ...]], conversations: int) -> float:
    """Events/s of sqlite3 ``executemany``, `RAW_BATCH` rows per transaction, into the
    tables of schema migration 1."""
    directory.mkdir(parents=True)
    with contextlib.closing(sqlite3.connect(directory / LOG_FILE, isolation_level=None)) as db:
        db.execute("PRAGMA journal_mode = WAL")
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute(f"PRAGMA cache_size = -{CACHE_KIB}")
        migrate_log(db, LOG_MIGRATIONS[:1])
        now = now_micros()
        db.executemany(
            "INSERT INTO conversations (key, id, status, created_us, updated_us) "
            "VALUES (?, ?, 'STOPPED', ?, ?)",
            [(key, f"raw-{key}", now, now) for key in range(1, conversations + 1)],
        )
        start = time.perf_counter()
        for batch in chunks(rows, RAW_BATCH):
            db.execute("BEGIN")
            db.executemany(INSERT_EVENT, batch)
            db.execute("COMMIT")
        return len(rows) / (time.perf_counter() - start)


async def raw_limits(
    directory: Path, rows: Sequence[tuple[Any, ...]], conversations: int, samples: int, seed: int
) -> Metrics:
    metrics = {"raw.insert.rate": raw_insert(directory, rows, conversations)}
    per_conversation = len(rows) // conversations
    rng = random.Random(seed)
    aio = await bare_aiosqlite(directory)
    sync = bare_sqlite3(directory)
    try:
        warm(directory)
        timings: dict[str, list[float]] = {"aiosqlite": [], "sqlite3": []}
        for _ in range(samples):
            conversation = f"raw-{rng.randint(1, conversations)}"
            start_id = rng.randrange(per_conversation)
            sql, params = page_sql(conversation, start_id, None)
            began = time.perf_counter()
            await aio.execute_fetchall(sql, params)
            middle = time.perf_counter()
            sync.execute(sql, params).fetchall()
            timings["aiosqlite"].append(middle - began)
            timings["sqlite3"].append(time.perf_counter() - middle)
    finally:
        await aio.close()
        sync.close()
    for name, durations in timings.items():
        metrics |= latency(f"raw.page.{name}", durations)
    return metrics


# -- (b) appends -----------------------------------------------------------------------


async def append_benchmark(
    prefix: str, directory: Path, streams: Sequence[Sequence[EventBase]]
) -> Metrics:
    """Each stream appended event by event by its own task, into a fresh store.

    Reports the acknowledged rate, the rate until everything is also searchable, per-append
    latency, and the index lag: how long ``wait_indexed`` takes, sampled while appending.
    """
    latencies: list[float] = []
    lags: list[float] = []
    store = await SqliteStorage.open(directory)

    async def append_all(conversation_id: str, events: Sequence[EventBase]) -> None:
        for event in events:
            began = time.perf_counter()
            await store.append(conversation_id, event)
            latencies.append(time.perf_counter() - began)

    async def sample_lag() -> None:
        while True:
            began = time.perf_counter()
            await store.wait_indexed()
            lags.append(time.perf_counter() - began)
            await asyncio.sleep(LAG_SAMPLE_INTERVAL)

    try:
        ids = [(await store.create_conversation(NewConversation())).id for _ in streams]
        gc.collect()
        sampler = asyncio.create_task(sample_lag())
        try:
            start = time.perf_counter()
            await asyncio.gather(*map(append_all, ids, streams))
            acknowledged = time.perf_counter()
            await store.wait_indexed()
            searchable = time.perf_counter()
        finally:
            sampler.cancel()
    finally:
        await store.close()
    total = len(latencies)
    return {
        f"{prefix}.rate": total / (acknowledged - start),
        f"{prefix}.rate_fts": total / (searchable - start),
        f"{prefix}.catch_up": (searchable - acknowledged) * 1e3,
        **latency(prefix, latencies),
        **latency(f"{prefix}.lag", lags),
    }


# -- the big dataset -------------------------------------------------------------------

MANIFEST = "dataset.json"


@dataclass(frozen=True, slots=True)
class Dataset:
    """The big store's conversations (id, events) and how often each marker word occurs."""

    directory: Path
    typical: list[tuple[str, int]]
    big: tuple[str, int]
    markers: dict[str, int]
    facts: dict[str, Any]
    """Load rate (absent when reused), file sizes, WAL size after the load."""


def conversation_sizes(events: int, conversations: int) -> list[int]:
    base, extra = divmod(events, conversations)
    return [base + (index < extra) for index in range(conversations)]


async def open_dataset(
    directory: Path, events: int, conversations: int, big: int, seed: int
) -> tuple[SqliteStorage, Dataset]:
    """Open the big store in ``directory``, loading it first unless a previous run left
    one of the same shape there."""
    shape = {"events": events, "conversations": conversations, "big": big, "seed": seed}
    manifest = directory / MANIFEST
    if manifest.exists():
        saved = orjson.loads(manifest.read_bytes())
        if saved["shape"] == shape:
            log(f"reusing the dataset in {directory}")
            store = await SqliteStorage.open(directory)
            typical = [(cid, count) for cid, count in saved["typical"]]
            big_conversation = (saved["big"][0], saved["big"][1])
            facts = saved["facts"] | {"reused": True}
            return store, Dataset(directory, typical, big_conversation, saved["markers"], facts)
    shutil.rmtree(directory, ignore_errors=True)
    store = await SqliteStorage.open(directory)
    plan = [big, *conversation_sizes(events, conversations)]
    markers: Counter[str] = Counter()
    ids, facts = await load(store, plan, seed, markers)
    facts |= checkpoint(directory)
    dataset = Dataset(
        directory, list(zip(ids[1:], plan[1:], strict=True)), (ids[0], big), dict(markers), facts
    )
    manifest.write_bytes(
        orjson.dumps(
            {
                "shape": shape,
                "typical": dataset.typical,
                "big": dataset.big,
                "markers": dataset.markers,
                "facts": facts,
            }
        )
    )
    return store, dataset


async def load(
    store: SqliteStorage, plan: Sequence[int], seed: int, markers: Counter[str]
) -> tuple[list[str], dict[str, Any]]:
    """Create a conversation per entry of ``plan`` and append its events with
    `append_many` in batches of `LOAD_BATCH`, from `LOAD_TASKS` concurrent tasks."""
    ids = [(await store.create_conversation(NewConversation())).id for _ in plan]
    work = list(reversed(list(enumerate(zip(ids, plan, strict=True)))))
    appended = 0

    async def loader() -> None:
        nonlocal appended
        while work:
            index, (conversation_id, count) = work.pop()
            for batch in chunks(script(seed, index, markers).events(count), LOAD_BATCH):
                await store.append_many(conversation_id, batch)
                appended += len(batch)

    async def progress() -> None:
        while True:
            await asyncio.sleep(10)
            log(f"  {appended:,} of {sum(plan):,} events appended")

    log(f"loading {sum(plan):,} events into {len(plan):,} conversations")
    reporter = asyncio.create_task(progress())
    try:
        start = time.perf_counter()
        await asyncio.gather(*(loader() for _ in range(LOAD_TASKS)))
        acknowledged = time.perf_counter()
        await store.wait_indexed()
        searchable = time.perf_counter()
    finally:
        reporter.cancel()
    log(f"loaded in {acknowledged - start:.0f} s, searchable after {searchable - start:.0f} s")
    return ids, {
        "load.rate": appended / (acknowledged - start),
        "load.rate_fts": appended / (searchable - start),
        "load.catch_up": (searchable - acknowledged) * 1e3,
    }


def checkpoint(directory: Path) -> dict[str, Any]:
    """Checkpoint and truncate the log's WAL so reads start from a settled file."""
    sizes = {f"size.{path.name}": path.stat().st_size for path in directory.glob("*.db*")}
    with contextlib.closing(sqlite3.connect(directory / LOG_FILE, isolation_level=None)) as db:
        busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
    return {"files_after_load": sizes, "checkpoint_busy": bool(busy)}


async def verify(store: SqliteStorage, dataset: Dataset) -> None:
    """Every conversation holds the events appended to it, and full-text search finds
    exactly the events each marker word was put in."""
    for conversation_id, count in [*dataset.typical, dataset.big]:
        found = await store.count_events(conversation_id)
        if found != count:
            raise AssertionError(f"{conversation_id}: {found} events, {count} appended")
    for word, expected in dataset.markers.items():
        hits, cursor = 0, None
        while True:
            results = await store.search_all(word, limit=PAGE, cursor=cursor)
            hits += len(results.hits)
            if (cursor := results.next_cursor) is None:
                break
        if hits != expected:
            raise AssertionError(f"search_all({word!r}) finds {hits} events, {expected} have it")


# -- (c, d, e) reads -------------------------------------------------------------------

PAGE_FILTERS: dict[str, EventFilter | None] = {
    "none": None,
    "run": EventFilter(include_types=("run",)),
    "CmdRunAction": EventFilter(include_types=("CmdRunAction",)),
    "text": EventFilter(query=COMMON_WORD),
}
COUNT_FILTERS: dict[str, EventFilter | None] = {
    "none": None,
    "run": EventFilter(include_types=("run",)),
}
SEARCHES = ("common", "moderate", "rare", "moderate_one")


class Reads:
    """Random reads of the big dataset, each compared with bare SQLite (`Comparer`)."""

    def __init__(
        self,
        store: SqliteStorage,
        dataset: Dataset,
        comparer: Comparer,
        samples: int,
        rng: random.Random,
    ) -> None:
        self._store = store
        self._dataset = dataset
        self._comparer = comparer
        self._samples = samples
        self._rng = rng

    def _conversation(self, scope: str) -> tuple[str, int]:
        return self._dataset.big if scope == "big" else self._rng.choice(self._dataset.typical)

    async def pages(self) -> Metrics:
        metrics: Metrics = {}
        for scope in ("typical", "big"):
            for name, event_filter in PAGE_FILTERS.items():
                metrics |= await self._comparer.measure(
                    f"page.{scope}.{name}",
                    self._samples,
                    partial(self._page, scope, event_filter),
                )
        return metrics

    async def counts(self) -> Metrics:
        metrics: Metrics = {}
        for scope in ("typical", "big"):
            for name, event_filter in COUNT_FILTERS.items():
                metrics |= await self._comparer.measure(
                    f"count.{scope}.{name}",
                    self._samples,
                    partial(self._count, scope, event_filter),
                )
        return metrics

    async def searches(self) -> Metrics:
        metrics: Metrics = {}
        for name in SEARCHES:
            metrics |= await self._comparer.measure(
                f"search.{name}", self._samples, partial(self._search, name)
            )
        return metrics

    def _page(self, scope: str, event_filter: EventFilter | None) -> Probe:
        conversation_id, count = self._conversation(scope)
        start_id = self._rng.randrange(count)
        sql, params = page_sql(conversation_id, start_id, event_filter)

        async def ours() -> list[Any]:
            page = await self._store.search_events(
                conversation_id, start_id=start_id, filter=event_filter
            )
            return [event.id for event in page.events]

        return Probe(ours, sql, params, lambda rows: [row[0] for row in rows[:PAGE]])

    def _count(self, scope: str, event_filter: EventFilter | None) -> Probe:
        conversation_id, _ = self._conversation(scope)
        sql, params = count_sql(conversation_id, event_filter)

        async def ours() -> list[Any]:
            return [await self._store.count_events(conversation_id, filter=event_filter)]

        return Probe(ours, sql, params, lambda rows: [rows[0][0]])

    def _search(self, name: str) -> Probe:
        if name == "common":
            word = COMMON_WORD
        else:
            word = self._rng.choice(RARE_WORDS if name == "rare" else MODERATE_WORDS)
        within = [self._conversation("typical")[0]] if name == "moderate_one" else None
        sql, params = search_sql(word, within)

        async def ours() -> list[Any]:
            results = await self._store.search_all(
                word, conversation_ids=within, limit=SEARCH_LIMIT
            )
            return [(hit.conversation_id, hit.event.id) for hit in results.hits]

        return Probe(
            ours, sql, params, lambda rows: [(row[1], row[2]) for row in rows[:SEARCH_LIMIT]]
        )


def query_plans(connection: sqlite3.Connection, dataset: Dataset) -> dict[str, list[str]]:
    """SQLite's plan for each kind of read, for the report."""
    conversation_id = dataset.big[0]
    statements: dict[str, tuple[str, tuple[Any, ...]]] = {}
    for name, event_filter in PAGE_FILTERS.items():
        statements[f"page.{name}"] = page_sql(conversation_id, 1, event_filter)
    for name, event_filter in COUNT_FILTERS.items():
        statements[f"count.{name}"] = count_sql(conversation_id, event_filter)
    statements["search"] = search_sql(MODERATE_WORDS[0], None)
    statements["search.one"] = search_sql(MODERATE_WORDS[0], [conversation_id])
    return {
        name: [row[3] for row in connection.execute(f"EXPLAIN QUERY PLAN {sql}", params)]
        for name, (sql, params) in statements.items()
    }


# -- one run ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Workload:
    """The append workloads, built once and reused by every run."""

    sequential: list[EventBase]
    """One conversation's events, appended one by one."""
    streams: list[list[EventBase]]
    """`WRITERS` conversations' events, appended concurrently."""
    rows: list[tuple[Any, ...]]
    """The rows of ``streams`` as the log writer inserts them, for the raw insert."""

    @classmethod
    def build(cls, seed: int, events: int, sequential: int) -> Workload:
        ignored: Counter[str] = Counter()
        streams = [
            list(script(seed + 1, index, ignored).events(events // WRITERS))
            for index in range(WRITERS)
        ]
        one = list(script(seed + 2, 0, ignored).events(sequential))
        return cls(one, streams, raw_rows(streams))


async def measure_run(
    run: int, scratch: Path, workload: Workload, reads: Reads, dataset: Dataset, samples: int
) -> Metrics:
    try:
        log(f"run {run + 1}: raw limits")
        metrics = await raw_limits(scratch / "raw", workload.rows, WRITERS, samples, run)
        log(f"run {run + 1}: appends")
        metrics |= await append_benchmark("append.one", scratch / "one", [workload.sequential])
        metrics |= await append_benchmark("append.hundred", scratch / "hundred", workload.streams)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    sections = {"pages": reads.pages, "counts": reads.counts, "searches": reads.searches}
    for name, section in sections.items():
        log(f"run {run + 1}: {name}")
        metrics[f"warm.{name}"] = warm(dataset.directory)
        metrics |= await section()
    # The machines are shared: a load well above what this process makes flags a noisy run.
    metrics["loadavg"] = os.getloadavg()[0]
    return metrics


def median(runs: Sequence[Metrics]) -> Metrics:
    keys = dict.fromkeys(key for run in runs for key in run)
    return {key: statistics.median(run[key] for run in runs if key in run) for key in keys}


# -- the report ------------------------------------------------------------------------

PAGE_LABELS = {
    "none": "no filter",
    "run": 'include_types=["run"]',
    "CmdRunAction": 'include_types=["CmdRunAction"]',
    "text": f'query="{COMMON_WORD}" (~10%)',
}
COUNT_LABELS = {"none": "no filter (raw: count(*))", "run": 'include_types=["run"]'}
SEARCH_LABELS = {
    "common": f'"{COMMON_WORD}" (~10% of events)',
    "moderate": "a word in ~1% of events",
    "rare": "a word in ~0.01% of events",
    "moderate_one": "a ~1% word, conversation_ids=[1]",
}
COMPARED = [f"{variant} {p}" for variant in ("ours", "aio", "sqlite3") for p in ("p50", "p99")]
COMPARED.append("ours/aio p99")


@dataclass(frozen=True, slots=True)
class Verdict:
    passed: bool
    target: str
    figure: str


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
    for scope, scope_label in (("typical", "typical"), ("big", big_label)):
        for name, label in PAGE_LABELS.items():
            ours, bare = m[f"page.{scope}.{name}.ours.p99"], m[f"page.{scope}.{name}.aiosqlite.p99"]
            found.append(
                Verdict(
                    ours <= 1.5 * bare and ours < 5,
                    f"page p99 <= 1.5x bare aiosqlite and < 5 ms: {scope_label}, {label}",
                    f"{ours:.2f} ms = {ours / bare:.2f}x",
                )
            )
    for name, label in COUNT_LABELS.items():
        p99 = m[f"count.big.{name}.ours.p99"]
        found.append(Verdict(p99 < 2, f"count p99 < 2 ms: {big_label}, {label}", f"{p99:.2f} ms"))
    return found


def render(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    table = [list(header), *(list(row) for row in rows)]
    widths = [max(len(row[column]) for row in table) for column in range(len(header))]
    lines = [title]
    for row in table:
        cells = [row[0].ljust(widths[0])]
        cells += [cell.rjust(width) for cell, width in zip(row[1:], widths[1:], strict=True)]
        lines.append("  " + "  ".join(cells).rstrip())
    return "\n".join(lines)


def _ms(m: Metrics, key: str) -> str:
    value = m.get(key)
    if value is None:
        return "-"
    return f"{value:.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def _rate(m: Metrics, key: str) -> str:
    value = m.get(key)
    return "-" if value is None else f"{value:,.0f}"


def _percentiles(m: Metrics, prefix: str) -> list[str]:
    return [_ms(m, f"{prefix}.p50"), _ms(m, f"{prefix}.p99")]


def _compared(m: Metrics, label: str, prefix: str) -> list[str]:
    cells = [label]
    for variant in Comparer.VARIANTS:
        cells += _percentiles(m, f"{prefix}.{variant}")
    ours, bare = m.get(f"{prefix}.ours.p99"), m.get(f"{prefix}.aiosqlite.p99")
    cells.append("-" if ours is None or not bare else f"{ours / bare:.2f}x")
    return cells


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
            [
                _compared(m, f"{scope_label}, {label}", f"page.{scope}.{name}")
                for scope, scope_label in (("typical", "typical"), ("big", big_label))
                for name, label in PAGE_LABELS.items()
            ],
        ),
        "",
        render(
            "(d) count_events (ms)",
            ["", *COMPARED],
            [
                _compared(m, f"{scope_label}, {label}", f"count.{scope}.{name}")
                for scope, scope_label in (("typical", "typical"), ("big", big_label))
                for name, label in COUNT_LABELS.items()
            ],
        ),
        "",
        render(
            f"(e) search_all, limit {SEARCH_LIMIT}, newest first (ms)",
            ["", *COMPARED],
            [_compared(m, label, f"search.{name}") for name, label in SEARCH_LABELS.items()],
        ),
        "",
        "targets (on the medians)",
        *(
            f"  {'PASS' if verdict['passed'] else 'FAIL'}  {verdict['target']}: {verdict['figure']}"
            for verdict in result["targets"]
        ),
    ]
    return "\n".join(lines)


def _appends(m: Metrics, label: str, prefix: str) -> list[str]:
    rates = [_rate(m, f"{prefix}.rate"), _rate(m, f"{prefix}.rate_fts")]
    lags = [*_percentiles(m, f"{prefix}.lag"), _ms(m, f"{prefix}.catch_up")]
    return [label, *rates, *_percentiles(m, prefix), *lags]


def environment() -> dict[str, Any]:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return {
        "machine": platform.platform(),
        "cpus": os.cpu_count(),
        "python": platform.python_version(),
        "sqlite": sqlite3.sqlite_version,
        "aiosqlite": aiosqlite.__version__,
        "orjson": orjson.__version__,
        "pydantic": pydantic.VERSION,
        "commit": commit or "unknown",
    }


# -- main ------------------------------------------------------------------------------

STARTED = time.perf_counter()


def log(message: str) -> None:
    print(f"[{time.perf_counter() - STARTED:6.0f}s] {message}", file=sys.stderr, flush=True)


async def benchmark(args: argparse.Namespace, root: Path) -> dict[str, Any]:
    log(f"building the append workloads ({args.append_events:,} + {args.sequential_events:,})")
    workload = Workload.build(args.seed, args.append_events, args.sequential_events)
    # The workloads stay in memory for the whole run: keep the collector off them.
    gc.collect()
    gc.freeze()
    store, dataset = await open_dataset(
        root / "dataset", args.events, args.conversations, args.big_conversation, args.seed
    )
    aio = await bare_aiosqlite(dataset.directory)
    sync = bare_sqlite3(dataset.directory)
    try:
        log("verifying the dataset")
        await verify(store, dataset)
        reads = Reads(store, dataset, Comparer(aio, sync), args.samples, random.Random(args.seed))
        runs = [
            await measure_run(run, root / f"run-{run}", workload, reads, dataset, args.samples)
            for run in range(args.runs)
        ]
        plans = query_plans(sync, dataset)
    finally:
        await aio.close()
        sync.close()
        await store.close()
    config = {
        key: value for key, value in vars(args).items() if key not in ("out", "data_dir", "keep")
    }
    config["event_bytes"] = statistics.mean(len(row[8]) for row in workload.rows)
    config["text_bytes"] = statistics.mean(len(row[7]) for row in workload.rows)
    middle = median(runs)
    return {
        "config": config,
        "environment": environment(),
        "dataset": dataset.facts | {"markers": dataset.markers},
        "median": middle,
        "targets": [
            {"passed": v.passed, "target": v.target, "figure": v.figure}
            for v in verdicts(middle, f"{args.big_conversation // 1000}k-event conversation")
        ],
        "runs": runs,
        "plans": plans,
    }


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=1_000_000, help="big dataset size")
    parser.add_argument("--conversations", type=int, default=1_000, help="it holds them in")
    parser.add_argument(
        "--big-conversation", type=int, default=100_000, help="events of its one big conversation"
    )
    parser.add_argument("--append-events", type=int, default=100_000, help="for (a) and (b)")
    parser.add_argument(
        "--sequential-events", type=int, default=10_000, help="appended from 1 conversation"
    )
    parser.add_argument("--samples", type=int, default=1_000, help="per read figure and run")
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "storage.json")
    parser.add_argument("--data-dir", type=Path, help="default: a new directory under /tmp")
    parser.add_argument("--keep", action="store_true", help="keep the data directory")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    root = args.data_dir or Path(tempfile.mkdtemp(prefix="threadline-bench-", dir="/tmp"))
    try:
        result = asyncio.run(benchmark(args, root))
    finally:
        if args.keep:
            log(f"data kept in {root}")
        elif args.data_dir is None:
            shutil.rmtree(root, ignore_errors=True)
        else:
            shutil.rmtree(root / "dataset", ignore_errors=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
