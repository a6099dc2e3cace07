"""Serving the app under uvicorn: one process (`run`), or ``--workers N`` of them on one
listening socket (`supervise`).

Workers are whole threadline processes sharing a PostgreSQL database (a SQLite file has
one writer, so workers need ``--database``): each holds its own cluster lease, runs what
it admits and streams what any of them logs (`server.cluster`, `storage.remote`). The
supervisor binds the socket once (the kernel spreads connections over the workers),
restarts a worker that dies (its runs are taken over by the others when its lease runs
out), and on SIGTERM or SIGINT stops them all gracefully.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sys
import time
from multiprocessing.process import BaseProcess
from types import FrameType
from typing import Any

import uvicorn

from server import logs
from server.protocol import http_protocol
from server.settings import Settings
from server.streaming.frames import DirectFramesProtocol

logger = logging.getLogger("threadline")
RESTART_DELAY_SECONDS = 1.0
TICK_SECONDS = 1.0
STOP_WAIT_SECONDS = 20.0
KEEP_ALIVE_SECONDS = 30
"""How long an idle kept-alive connection stays open. Longer than clients' own expiry
(httpx's is 5 s): when both sides give up at the same moment, a client reusing the
connection in its 5th idle second meets the server's close and gets a reset instead of
an answer (uvicorn's default is 5 s; the admission benchmark's appenders lost 3 of 10
runs to it, none of 10 at 30 s)."""


class ThreadlineServer(uvicorn.Server):
    """uvicorn, but on SIGTERM/SIGINT the conversations are stopped and the live streams
    ended *before* uvicorn waits for connections to close. Its WebSocket connections
    take pre-encoded frames (`server.streaming.frames`) unless ``config.ws`` names a
    protocol.

    Its main loop ticks once a second (`TICK_SECONDS`), not ten times: a tick only
    renews the ``Date`` header (once a second in uvicorn too) and looks at
    `should_exit`, and each woke an idle server, ~1.5 ms of CPU a second here (issue
    13). Setting `should_exit` (a signal handler, or code) wakes the loop at once."""

    def __init__(self, config: uvicorn.Config, app: Any) -> None:
        self._exit = False
        self._exit_wakeup: tuple[asyncio.AbstractEventLoop, asyncio.Event] | None = None
        if config.ws == "auto":
            config.ws = DirectFramesProtocol
        super().__init__(config)
        self._app = app

    @property
    def should_exit(self) -> bool:
        return self._exit

    @should_exit.setter
    def should_exit(self, value: bool) -> None:
        self._exit = value
        if value and self._exit_wakeup is not None:
            loop, event = self._exit_wakeup
            # Signal-safe, as asyncio's own signal handling: a callback and a wake-up.
            with contextlib.suppress(RuntimeError):  # the loop is closed already
                loop.call_soon_threadsafe(event.set)

    async def main_loop(self) -> None:
        exit_requested = asyncio.Event()
        self._exit_wakeup = (asyncio.get_running_loop(), exit_requested)
        try:
            ticks = 0
            should_exit = await self.on_tick(ticks)
            while not should_exit:
                ticks = (ticks + 10) % 864_000  # uvicorn counts tenths of a second
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(TICK_SECONDS):
                        await exit_requested.wait()
                should_exit = await self.on_tick(ticks)
        finally:
            self._exit_wakeup = None

    async def startup(self, sockets: list[Any] | None = None) -> None:
        _watch_children_with_pidfds()
        await super().startup(sockets)

    async def shutdown(self, sockets: list[Any] | None = None) -> None:
        from server.app import prepare_shutdown

        await prepare_shutdown(self._app)
        await super().shutdown(sockets)


def _watch_children_with_pidfds() -> None:
    """Python 3.11 reaps each command with a thread of its own; a pidfd watcher does it
    from the event loop (3.12 does so by default). Called in the running loop."""
    if sys.version_info < (3, 12) and hasattr(os, "pidfd_open"):
        watcher = asyncio.PidfdChildWatcher()
        watcher.attach_loop(asyncio.get_running_loop())
        asyncio.get_event_loop_policy().set_child_watcher(watcher)


def _config(settings: Settings, app: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app,
        host=settings.host,
        port=settings.port,
        http=http_protocol(settings.header_timeout),
        log_level=settings.log_level,
        ws_ping_interval=settings.heartbeat_interval,
        ws_ping_timeout=settings.heartbeat_interval * 2,
        ws_per_message_deflate=False,
        ws_max_size=settings.max_message_bytes,
        timeout_graceful_shutdown=5,
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        lifespan="on",
        # JSON lines: uvicorn's loggers go through ours (`logs.configure`).
        log_config=None if settings.log_format == "json" else uvicorn.config.LOGGING_CONFIG,
    )


def run(settings: Settings, listening: socket.socket | None = None) -> None:
    """Serve in this process (on ``listening``, a worker's inherited socket, if given)."""
    from server.app import create_app

    app = create_app(settings)
    config = _config(settings, app)
    logs.redact_uvicorn()  # after uvicorn.Config, which installs its own logging setup
    ThreadlineServer(config, app).run(sockets=[listening] if listening else None)


def _worker(settings: Settings, listening: socket.socket) -> None:
    logs.configure(settings.log_level, settings.log_format)
    run(settings, listening)


def supervise(settings: Settings) -> int:
    """Run ``settings.workers`` workers until SIGTERM or SIGINT; their exit code."""
    listening = _config(settings, None).bind_socket()
    context = multiprocessing.get_context("spawn")
    stopping = False

    def start() -> BaseProcess:
        process = context.Process(target=_worker, args=(settings, listening), daemon=False)
        process.start()
        return process

    def stop(signum: int, _: FrameType | None) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    workers = [start() for _ in range(settings.workers)]
    logger.info(
        "%d workers on %s:%d (pids %s)",
        settings.workers, settings.host, settings.port, " ".join(str(w.pid) for w in workers),
    )  # fmt: skip
    while not stopping:
        time.sleep(0.2)
        for index, process in enumerate(workers):
            if not process.is_alive() and not stopping:
                logger.warning(
                    "worker %s exited (code %s); starting another", process.pid, process.exitcode
                )
                time.sleep(RESTART_DELAY_SECONDS)
                workers[index] = start()
    for process in workers:
        if process.is_alive() and process.pid is not None:
            os.kill(process.pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_WAIT_SECONDS
    for process in workers:
        process.join(max(deadline - time.monotonic(), 0.1))
        if process.is_alive():
            process.kill()
            process.join()
    listening.close()
    return 0
