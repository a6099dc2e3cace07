"""`ThreadlineServer`'s main loop: an idle server does not wake every tenth of a second,
and an exit request is heard at once, not at the next tick."""

from __future__ import annotations

import asyncio

import pytest
import uvicorn
from starlette.applications import Starlette

import server.app  # the shutdown imports it: as in a real server, up front
import server.serving
from server.serving import ThreadlineServer
from tests.server.running import free_port


async def test_an_idle_server_waits_for_its_tick_and_hears_an_exit_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A tick an hour away: any tick but the first would be uvicorn's own pace (ten a
    # second), and only the wake-up can end the loop before the test gives up.
    monkeypatch.setattr(server.serving, "TICK_SECONDS", 3600.0)
    app = Starlette()
    config = uvicorn.Config(app, port=free_port(), log_level="warning", lifespan="off")
    server_ = ThreadlineServer(config, app)
    ticks: list[int] = []
    on_tick = server_.on_tick

    async def counted(counter: int) -> bool:
        ticks.append(counter)
        return await on_tick(counter)

    monkeypatch.setattr(server_, "on_tick", counted)
    serving = asyncio.create_task(server_.serve())
    while not server_.started:
        assert not serving.done(), "the server did not start"
        await asyncio.sleep(0.02)

    await asyncio.sleep(0.5)
    assert ticks == [0]  # uvicorn's own loop: five by now

    server_.should_exit = True
    await asyncio.wait_for(serving, 5)
    assert len(ticks) == 2  # the wake-up's tick saw the exit
