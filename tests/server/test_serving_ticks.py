"""`ThreadlineServer`'s main loop: an idle server wakes once a second, not ten times, and
an exit request is heard at once, not at the next tick."""

from __future__ import annotations

import asyncio
import time

import pytest
import uvicorn
from starlette.applications import Starlette

import server.app  # noqa: F401  (the shutdown imports it: as in a real server, up front)
from server.serving import TICK_SECONDS, ThreadlineServer
from tests.server.running import free_port


async def test_an_idle_server_ticks_once_a_second_and_hears_an_exit_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    app = Starlette()
    config = uvicorn.Config(app, port=free_port(), log_level="warning", lifespan="off")
    server = ThreadlineServer(config, app)
    ticks: list[float] = []
    ticked = asyncio.Event()
    on_tick = server.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(time.monotonic())
        ticked.set()
        return await on_tick(counter)

    monkeypatch.setattr(server, "on_tick", counted)
    serving = asyncio.create_task(server.serve())
    while not server.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.02)

    await asyncio.sleep(2.5 * TICK_SECONDS)
    assert len(ticks) <= 4, f"{len(ticks)} ticks in 2.5 s"  # uvicorn's own loop: 25

    ticked.clear()
    await ticked.wait()  # just after a tick: the next one is a second away
    asked = time.monotonic()
    server.should_exit = True
    await asyncio.wait_for(serving, 5)
    assert time.monotonic() - asked < TICK_SECONDS / 2
