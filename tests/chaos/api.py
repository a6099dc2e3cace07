"""The REST client every scenario speaks through: it tallies every answer by status,
keeps a few examples of each server error, and reads whole logs."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass
from typing import Any

import httpx
import orjson

Event = dict[str, Any]
PAGE = 100
STEPS = 1_000_000
"""``max_iterations`` of the harness's agent conversations: under this much load a run
would otherwise trip its iteration flag and wait for a person, which is no fault."""


@dataclass(frozen=True, slots=True)
class Answer:
    status: int | None
    """None: no answer (refused, reset, timed out)."""
    body: Any
    headers: httpx.Headers | None
    sent_at: float
    """time.time() when the request was sent."""
    seconds: float

    @property
    def event_id(self) -> int | None:
        if self.status == 200 and isinstance(self.body, dict):
            value = self.body.get("event_id")
            return value if isinstance(value, int) else None
        return None


class Api:
    def __init__(self, url: str, timeout: float = 30.0) -> None:
        self.client = httpx.AsyncClient(
            base_url=url, timeout=timeout, limits=httpx.Limits(max_connections=200)
        )
        self.statuses: Counter[int | None] = Counter()
        self.errors: list[str] = []
        """Examples (method, path, status, body) of 5xx answers other than the ones
        a scenario allows."""

    async def close(self) -> None:
        await self.client.aclose()

    async def request(self, method: str, path: str, **kwargs: Any) -> Answer:
        sent_at, started = time.time(), time.perf_counter()
        try:
            response = await self.client.request(method, path, **kwargs)
        except httpx.HTTPError:
            self.statuses[None] += 1
            return Answer(None, None, None, sent_at, time.perf_counter() - started)
        seconds = time.perf_counter() - started
        self.statuses[response.status_code] += 1
        try:
            body = orjson.loads(response.content) if response.content else None
        except orjson.JSONDecodeError:
            body = response.text[:200]
        if response.status_code >= 500 and len(self.errors) < 20:
            self.errors.append(f"{method} {path} -> {response.status_code} {str(body)[:160]}")
        return Answer(response.status_code, body, response.headers, sent_at, seconds)

    def count_5xx(self, allowed: tuple[int, ...] = ()) -> int:
        return sum(n for s, n in self.statuses.items() if s and s >= 500 and s not in allowed)

    # -- conversations ---------------------------------------------------------------

    async def create(self, **body: Any) -> str:
        answer = await self.request("POST", "/api/conversations", json=body)
        if answer.status != 201:
            raise RuntimeError(f"create answered {answer.status}: {answer.body}")
        return str(answer.body["conversation_id"])

    async def think(self, conversation_id: str, thought: str) -> Answer:
        """A user action that only appends (no agent reacts to it)."""
        return await self.request(
            "POST",
            f"/api/conversations/{conversation_id}/events",
            json={"action": "think", "args": {"thought": thought}},
        )

    async def message(self, conversation_id: str, text: str) -> Answer:
        """A user message: handed to the running agent, or it starts a run."""
        return await self.request(
            "POST", f"/api/conversations/{conversation_id}/message", json={"message": text}
        )

    async def stop(self, conversation_id: str) -> Answer:
        return await self.request("POST", f"/api/conversations/{conversation_id}/stop")

    async def record(self, conversation_id: str) -> dict[str, Any]:
        answer = await self.request("GET", f"/api/conversations/{conversation_id}")
        if answer.status != 200:
            raise RuntimeError(f"GET conversation answered {answer.status}: {answer.body}")
        return dict(answer.body)

    async def sessions(self) -> dict[str, Any]:
        answer = await self.request("GET", "/api/sessions")
        if answer.status != 200:
            raise RuntimeError(f"GET sessions answered {answer.status}: {answer.body}")
        return dict(answer.body)

    async def events(self, conversation_id: str, start_id: int = 0) -> list[Event]:
        """The whole log of a conversation from ``start_id``, page by page."""
        found: list[Event] = []
        while True:
            answer = await self.request(
                "GET",
                f"/api/conversations/{conversation_id}/events",
                params={"start_id": start_id, "limit": PAGE},
            )
            if answer.status != 200:
                raise RuntimeError(f"GET events answered {answer.status}: {answer.body}")
            page = answer.body["events"]
            found += page
            if not answer.body["has_more"] or not page:
                return found
            start_id = page[-1]["id"] + 1

    async def last_id(self, conversation_id: str) -> int:
        answer = await self.request(
            "GET",
            f"/api/conversations/{conversation_id}/events",
            params={"reverse": "true", "limit": 1},
        )
        if answer.status != 200:
            raise RuntimeError(f"GET events answered {answer.status}: {answer.body}")
        page = answer.body["events"]
        return int(page[0]["id"]) if page else -1
