"""HTTP benchmark: the REST events page of 100 from the real server, next to a bare
Starlette + aiosqlite app answering the same SQL from the same file.

Run by hand, never by the tests (from the repository root):

    .venv/bin/python bench/http.py [--runs 3] [--events 10000] [--concurrency 32]

One conversation of ``--events`` realistic events (the generator of bench/storage.py) is
preloaded with `SqliteStorage.append_many`; then each server in turn is started in its
own process on the same data directory:

* ``ours``: ``python -m server.cli serve --port P --data-dir D``, exactly as
  ``threadline serve`` runs (its default log level, info, so one access-log line per
  request; its output goes to a file);
* ``ours-quiet``: the same with ``--log-level warning`` (the cost of the access log);
* ``bare``: Starlette + uvicorn (same configuration) with one route that runs the SQL
  `search_events` runs through one aiosqlite connection and joins the stored bytes the
  same way; no auth, no conversation lookup, no parameter checks.

Against each: ``GET /api/conversations/{id}/events?start_id=<random>&limit=100``, with
(a) one sequential keep-alive client written on a plain socket (so the client adds
microseconds, not the ~0.3 ms of an HTTP library), (b) the same through
``httpx.Client`` for reference, and (c) ``--concurrency`` keep-alive connections from a
separate client process on asyncio streams for ``--seconds`` (requests/s, latency under
load, server CPU per request). The data files are read in full before each server is
measured (this VM pages out file cache left idle for about a minute) and every server
gets warm-up requests. With ``--runs R`` every figure is the median of R runs.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

# Run as `python bench/http.py`, this file's directory comes first on sys.path, where this
# file would shadow the standard library's `http` (and bench/storage.py the `storage`
# package): put the repository root there instead.
sys.path.pop(0)
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx
import orjson

from bench.common import (
    RESULTS,
    ROOT,
    Metrics,
    Verdict,
    count,
    cpu_seconds,
    environment,
    environment_line,
    free_port,
    latency,
    log,
    machine_busy_seconds,
    median,
    ms,
    ratio,
    render,
    rss_bytes,
    verdict_lines,
    wait_for_port,
)

PAGE = 100
MIB = 1024 * 1024
WARM_UP_REQUESTS = 300


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    title: str


TARGETS = (
    Target("ours", "threadline serve (default log level: access log on)"),
    Target("ours-quiet", "threadline serve --log-level warning"),
    Target("bare", "bare Starlette + aiosqlite, same SQL"),
)


# -- clients ---------------------------------------------------------------------------


def request_bytes(path: str) -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n".encode()


def page_paths(conversation_id: str, events: int, seed: int) -> Iterator[str]:
    rng = random.Random(seed)
    while True:
        start = rng.randrange(0, max(1, events - PAGE))
        yield f"/api/conversations/{conversation_id}/events?start_id={start}&limit={PAGE}"


class RawClient:
    """HTTP/1.1 keep-alive GETs on one plain socket (responses carry Content-Length)."""

    def __init__(self, port: int) -> None:
        self._socket = socket.create_connection(("127.0.0.1", port))
        self._socket.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._file = self._socket.makefile("rb")

    def get(self, path: str) -> bytes:
        self._socket.sendall(request_bytes(path))
        status = self._file.readline()
        length = -1
        while (line := self._file.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        if not status.startswith(b"HTTP/1.1 200") or length < 0:
            raise RuntimeError(f"unexpected answer: {status!r}")
        return self._file.read(length)

    def close(self) -> None:
        self._file.close()
        self._socket.close()


async def _async_get(reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str) -> None:
    writer.write(request_bytes(path))
    status = await reader.readline()
    length = -1
    while (line := await reader.readline()) not in (b"\r\n", b""):
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    if not status.startswith(b"HTTP/1.1 200") or length < 0:
        raise RuntimeError(f"unexpected answer: {status!r}")
    await reader.readexactly(length)


async def _load(
    port: int, conversation_id: str, events: int, connections: int, seconds: float
) -> dict[str, Any]:
    latencies: list[float] = []
    done = 0
    stop_at = time.perf_counter() + seconds

    async def one(index: int) -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        paths = page_paths(conversation_id, events, seed=1000 + index)
        while (now := time.perf_counter()) < stop_at:
            await _async_get(reader, writer, next(paths))
            latencies.append((time.perf_counter() - now) * 1000)
            done += 1
        writer.close()

    started = time.perf_counter()
    await asyncio.gather(*(one(index) for index in range(connections)))
    return {
        "requests": done,
        "seconds": time.perf_counter() - started,
        "latencies": latencies,
        "cpu": time.process_time(),
    }


def load_main(
    port: int, conversation_id: str, events: int, connections: int, seconds: float, conn: Connection
) -> None:
    """A client process: ``connections`` keep-alive connections for ``seconds``."""
    conn.send(asyncio.run(_load(port, conversation_id, events, connections, seconds)))


# -- servers ---------------------------------------------------------------------------


def bare_main(port: int, log_dir: str, conversation_id: str) -> None:
    """The bare server (a `multiprocessing` target): Starlette + uvicorn, one aiosqlite
    connection, the page SQL of `search_events`."""
    import contextlib
    from collections.abc import AsyncIterator

    import aiosqlite
    import uvicorn
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import Route

    from storage.sqlite.queries import page_query
    from storage.sqlite.store import LOG_FILE

    database: list[aiosqlite.Connection] = []

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        connection = await aiosqlite.connect(Path(log_dir) / LOG_FILE, isolation_level=None)
        await connection.execute("PRAGMA query_only = ON")
        await connection.execute("PRAGMA cache_size = -65536")
        database.append(connection)
        yield
        await connection.close()

    async def page(request: Request) -> Response:
        start = int(request.query_params.get("start_id", "0"))
        limit = int(request.query_params.get("limit", "20"))
        sql, params = page_query(
            request.path_params["conversation_id"], start, None, False, None, limit + 1
        )
        rows = list(await database[0].execute_fetchall(sql, params))
        body = b'{"events":[' + b",".join(row[1] for row in rows[:limit]) + b'],"has_more":'
        body += b"true}" if len(rows) > limit else b"false}"
        return Response(body, media_type="application/json")

    app = Starlette(
        routes=[Route("/api/conversations/{conversation_id}/events", page)], lifespan=lifespan
    )
    uvicorn.run(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")


class Running:
    """One server process on a free port, ready for requests."""

    def __init__(self, target: Target, data_dir: Path, conversation_id: str) -> None:
        self.port = free_port()
        self._process: subprocess.Popen[bytes] | multiprocessing.process.BaseProcess
        if target.label == "bare":
            context = multiprocessing.get_context("spawn")
            process = context.Process(
                target=bare_main, args=(self.port, str(data_dir / "log"), conversation_id)
            )
            process.start()
            self._process = process
            assert process.pid is not None
            self.pid = process.pid
        else:
            command = [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)]
            command += ["--data-dir", str(data_dir)]
            if target.label == "ours-quiet":
                command += ["--log-level", "warning"]
            output = (data_dir / f"{target.label}.log").open("ab")
            self._process = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=output)
            output.close()
            self.pid = self._process.pid
        wait_for_port(self.port)

    def stop(self) -> None:
        if isinstance(self._process, subprocess.Popen):
            self._process.terminate()
            self._process.wait(30)
        else:
            self._process.terminate()
            self._process.join(30)


# -- measurement -----------------------------------------------------------------------


async def preload(data_dir: Path, events: int, seed: int) -> tuple[str, float]:
    """A conversation of ``events`` realistic events; its id and the mean event size."""
    from bench.storage import chunks, script
    from storage import NewConversation
    from storage.sqlite import SqliteStorage

    store = await SqliteStorage.open(data_dir / "log")
    try:
        record = await store.create_conversation(NewConversation(title="http benchmark"))
        for batch in chunks(script(seed, 0, Counter()).events(events), 1000):
            await store.append_many(record.id, batch)
        page = await store.search_events(record.id, start_id=0, limit=PAGE)
        size = sum(len(event.data) for event in page.events) / len(page.events)
        await store.wait_indexed()
    finally:
        await store.close()
    return record.id, size


def warm_files(data_dir: Path) -> None:
    for path in (data_dir / "log").iterdir():
        if path.is_file():
            with path.open("rb") as file:
                while file.read(1 << 20):
                    pass


def check_page(body: bytes, start: int) -> None:
    document = orjson.loads(body)
    ids = [event["id"] for event in document["events"]]
    if ids != list(range(start, start + PAGE)) or not isinstance(document["has_more"], bool):
        raise RuntimeError(f"wrong page from start_id={start}: {ids[:3]}...")


def measure(
    target: Target, data_dir: Path, conversation_id: str, events: int, args: argparse.Namespace
) -> Metrics:
    warm_files(data_dir)
    server = Running(target, data_dir, conversation_id)
    prefix = target.label
    try:
        time.sleep(0.5)
        idle = rss_bytes(server.pid) / MIB
        client = RawClient(server.port)
        try:
            check_page(client.get(f"/api/conversations/{conversation_id}/events?limit=100"), 0)
            paths = page_paths(conversation_id, events, seed=args.seed)
            for _ in range(WARM_UP_REQUESTS):
                client.get(next(paths))
            samples = []
            for _ in range(args.requests):
                path = next(paths)
                before = time.perf_counter()
                client.get(path)
                samples.append((time.perf_counter() - before) * 1000)
        finally:
            client.close()
        metrics = latency(f"{prefix}.raw", samples)
        metrics[f"{prefix}.raw.rate"] = 1000 / (sum(samples) / len(samples))

        with httpx.Client(base_url=f"http://127.0.0.1:{server.port}") as library:
            samples = []
            for _ in range(args.requests // 2):
                path = next(paths)
                before = time.perf_counter()
                library.get(path).raise_for_status()
                samples.append((time.perf_counter() - before) * 1000)
        metrics |= latency(f"{prefix}.httpx", samples)

        context = multiprocessing.get_context("spawn")
        receiver, sender = context.Pipe(duplex=False)
        loader = context.Process(
            target=load_main,
            args=(server.port, conversation_id, events, args.concurrency, args.seconds, sender),
        )
        busy_before, wall_before = machine_busy_seconds(), time.monotonic()
        cpu_before = cpu_seconds(server.pid)
        loader.start()
        sender.close()
        result: dict[str, Any] = receiver.recv()
        cpu = cpu_seconds(server.pid) - cpu_before
        others = machine_busy_seconds() - busy_before - cpu - result["cpu"]
        metrics[f"{prefix}.load.other_cpus"] = max(0.0, others / (time.monotonic() - wall_before))
        loader.join()
        metrics |= latency(f"{prefix}.load", result["latencies"])
        metrics[f"{prefix}.load.rate"] = result["requests"] / result["seconds"]
        metrics[f"{prefix}.load.server_us"] = cpu / result["requests"] * 1e6
        metrics[f"{prefix}.rss_idle_mib"] = idle
        metrics[f"{prefix}.rss_mib"] = rss_bytes(server.pid) / MIB
    finally:
        server.stop()
    log(
        f"  {target.label}: p50 {ms(metrics[f'{prefix}.raw.p50'])} / p99 "
        f"{ms(metrics[f'{prefix}.raw.p99'])} ms sequential, "
        f"{count(metrics[f'{prefix}.load.rate'])} req/s with {args.concurrency}"
    )
    return metrics


# -- report ----------------------------------------------------------------------------


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
            "targets (on the medians)",
            *verdict_lines(result["targets"]),
        ]
    )


# -- main ------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--events", type=int, default=10_000, help="in the one conversation")
    parser.add_argument("--requests", type=int, default=3_000, help="sequential, per server")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0, help="of concurrent load")
    parser.add_argument("--servers", default=",".join(t.label for t in TARGETS))
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=RESULTS / "http.json")
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> None:
    args = parse_args(argv)
    labels = args.servers.split(",")
    targets = [target for target in TARGETS if target.label in labels]
    root = Path(tempfile.mkdtemp(prefix="threadline-http-", dir="/tmp"))
    try:
        log(f"preloading {args.events:,} events")
        conversation_id, event_bytes = asyncio.run(preload(root, args.events, args.seed))
        runs = []
        for run in range(args.runs):
            log(f"run {run + 1} of {args.runs}")
            metrics: Metrics = {}
            for target in targets:
                metrics |= measure(target, root, conversation_id, args.events, args)
            runs.append(metrics)
    finally:
        shutil.rmtree(root, ignore_errors=True)
    middle = median(runs)
    result = {
        "config": {
            "events": args.events,
            "event_bytes": event_bytes,
            "requests": args.requests,
            "concurrency": args.concurrency,
            "seconds": args.seconds,
            "servers": labels,
        },
        "environment": environment(),
        "median": middle,
        "targets": [verdict.as_dict() for verdict in verdicts(middle)],
        "runs": runs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(orjson.dumps(result, option=orjson.OPT_INDENT_2))
    print(report(result))
    log(f"wrote {args.out}")


if __name__ == "__main__":
    main()
