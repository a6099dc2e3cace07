"""Helpers for the task, schedule and webhook tests: follow a task through its log, and
check every answer against the OpenAPI document."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from tests.server.clients import Event, follow
from tests.server.openapi_check import undocumented
from tests.server.running import RunningServer

FINAL = ("completed", "failed", "cancelled")
QUICK = {
    "THREADLINE_DEMO_PACE": "0.02",
    "THREADLINE_RATE_LIMIT": "none",
    "THREADLINE_SCHEDULE_MIN_INTERVAL": "1",
}


def task_state(event: Event) -> str | None:
    if event.get("observation") == "task_state":
        return event["extras"]["status"]  # type: ignore[no-any-return]
    return None


async def follow_task(
    server: RunningServer,
    task_id: str,
    *,
    until: Callable[[str], bool] = lambda status: status in FINAL,
    key: str | None = None,
    time_limit: float = 30.0,
) -> list[str]:
    """The task's statuses, in log order, from its conversation's stream (no polling)."""
    events = await follow(
        server,
        task_id,
        until=lambda event: (status := task_state(event)) is not None and until(status),
        key=key,
        time_limit=time_limit,
    )
    return [status for event in events if (status := task_state(event)) is not None]


class Documented:
    """Collects answers the OpenAPI document does not list (``event_hooks``)."""

    def __init__(self) -> None:
        self.spec: dict[str, Any] | None = None
        self.missing: list[str] = []

    async def __call__(self, response: httpx.Response) -> None:
        if self.spec is None:
            return
        if (line := undocumented(self.spec, response)) is not None:
            self.missing.append(line)


async def documented_client(
    server: RunningServer, headers: dict[str, str] | None = None
) -> AsyncIterator[tuple[httpx.AsyncClient, Documented]]:
    check = Documented()
    async with httpx.AsyncClient(
        base_url=server.url, timeout=30, headers=headers or {},
        event_hooks={"response": [check]},
    ) as client:  # fmt: skip
        check.spec = (await client.get("/openapi.json")).json()
        yield client, check
    assert check.missing == [], check.missing
