"""The servers `bench/http.py` measures, each in its own process on the same data
directory: ``threadline serve`` (with its access log on or off) and a bare Starlette +
aiosqlite app answering the page SQL of `search_events`.
"""

from __future__ import annotations

import multiprocessing
import sys
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from pathlib import Path

from bench.processes import Subprocess, free_port, wait_for_port


@dataclass(frozen=True, slots=True)
class Target:
    label: str
    title: str


TARGETS = (
    Target("ours", "threadline serve (default log level: access log on)"),
    Target("ours-quiet", "threadline serve --log-level warning"),
    Target("bare", "bare Starlette + aiosqlite, same SQL"),
)


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
        self._served: Subprocess | None = None
        self._bare: BaseProcess | None = None
        if target.label == "bare":
            context = multiprocessing.get_context("spawn")
            self._bare = context.Process(
                target=bare_main, args=(self.port, str(data_dir / "log"), conversation_id)
            )
            self._bare.start()
            assert self._bare.pid is not None
            self.pid = self._bare.pid
        else:
            argv = [sys.executable, "-m", "server.cli", "serve", "--port", str(self.port)]
            argv += ["--data-dir", str(data_dir)]
            if target.label == "ours-quiet":
                argv += ["--log-level", "warning"]
            # The benchmark is one client at full speed: no rate limit.
            no_limit = {"THREADLINE_RATE_LIMIT": "none"}
            self._served = Subprocess(argv, data_dir / f"{target.label}.log", no_limit)
            self.pid = self._served.pid
        wait_for_port(self.port)

    def stop(self) -> None:
        if self._served is not None:
            self._served.stop()
        if self._bare is not None:
            self._bare.terminate()
            self._bare.join(30)
