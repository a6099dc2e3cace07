"""`AsyncThreadline`: the REST API and the live streams of a threadline server, async.

    async with AsyncThreadline("http://127.0.0.1:3000", api_key=None) as threadline:
        conversation = await threadline.create("look around")
        async for event in threadline.watch(conversation.id):
            ...

Every call raises a typed `client.errors.ApiError` carrying the server's ``{error,
message, field}``, or `ServerUnreachable` when there is no answer.
"""

from __future__ import annotations

import builtins
import os
from collections.abc import AsyncIterable, AsyncIterator, Iterable
from types import TracebackType
from typing import Any, Literal

import httpx2
import orjson

from client.errors import ServerUnreachable, api_error
from client.models import (
    ControlResult,
    Conversation,
    ConversationList,
    Event,
    EventPage,
    Imported,
    SearchHit,
    SearchPage,
)
from client.watching import Transport, watch

DEFAULT_URL = "http://127.0.0.1:3000"
PAGE_LIMIT = 100


def default_url() -> str:
    """``$THREADLINE_URL``, else ``http://$THREADLINE_HOST:$THREADLINE_PORT`` (127.0.0.1:3000)."""
    host = os.environ.get("THREADLINE_HOST", "127.0.0.1")
    return os.environ.get("THREADLINE_URL") or (
        f"http://{host}:{os.environ.get('THREADLINE_PORT', '3000')}"
    )


def filter_params(
    *,
    query: str | None = None,
    include_types: Iterable[str] | None = None,
    exclude_types: Iterable[str] | None = None,
    source: str | None = None,
    start_date: str | None = None,
    end_date: str | None = None,
    exclude_hidden: bool = False,
) -> dict[str, str]:
    """The history filter as query parameters (see ``GET .../events``)."""
    params = {
        "query": query,
        "include_types": ",".join(include_types) if include_types else None,
        "exclude_types": ",".join(exclude_types) if exclude_types else None,
        "source": source,
        "start_date": start_date,
        "end_date": end_date,
        "exclude_hidden": "true" if exclude_hidden else None,
    }
    return {name: value for name, value in params.items() if value}


class AsyncThreadline:
    def __init__(
        self,
        url: str | None = None,
        *,
        api_key: str | None = None,
        timeout: float = 30.0,
    ) -> None:
        self.url = (url or default_url()).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("THREADLINE_API_KEY")
        headers = {"X-Session-API-Key": self.api_key} if self.api_key else {}
        self._http = httpx2.AsyncClient(
            base_url=self.url, headers=headers, timeout=httpx2.Timeout(timeout, read=600)
        )

    async def __aenter__(self) -> AsyncThreadline:
        return self

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # -- the wire --------------------------------------------------------------------

    async def request(self, method: str, path: str, **options: Any) -> Any:
        """One call; its JSON answer, or a typed error."""
        try:
            response = await self._http.request(method, path, **options)
        except httpx2.TransportError as exc:
            reason = str(exc) or type(exc).__name__
            raise ServerUnreachable(f"cannot reach {self.url}: {reason}") from exc
        return _answer(response)

    # -- conversations ---------------------------------------------------------------

    async def create(
        self,
        message: str | None = None,
        *,
        title: str | None = None,
        repository: str | None = None,
        agent: str | None = None,
        max_iterations: int | None = None,
        max_budget_per_task: float | None = None,
        priority: int | None = None,
        conversation_id: str | None = None,
        **more: Any,
    ) -> Conversation:
        """Create a conversation; with a ``message`` its agent starts on it."""
        body = {
            "initial_user_msg": message,
            "title": title,
            "repository": repository,
            "agent": agent,
            "max_iterations": max_iterations,
            "max_budget_per_task": max_budget_per_task,
            "priority": priority,
            "conversation_id": conversation_id,
            **more,
        }
        answer = await self.request(
            "POST", "/api/conversations", json={k: v for k, v in body.items() if v is not None}
        )
        return await self.get(answer["conversation_id"])

    async def get(self, conversation_id: str) -> Conversation:
        return Conversation.from_json(await self.request("GET", _path(conversation_id)))

    async def list(self, *, limit: int = 20, page_id: str | None = None) -> ConversationList:
        """One page, newest first; ``page_id`` continues from ``next_page_id``."""
        params: dict[str, Any] = {"limit": limit}
        if page_id:
            params["page_id"] = page_id
        answer = await self.request("GET", "/api/conversations", params=params)
        return ConversationList(
            [Conversation.from_json(item) for item in answer["results"]], answer["next_page_id"]
        )

    async def conversations(self) -> AsyncIterator[Conversation]:
        """Every conversation, newest first, page after page."""
        page_id: str | None = None
        while True:
            page = await self.list(limit=PAGE_LIMIT, page_id=page_id)
            for conversation in page.conversations:
                yield conversation
            if not page.next_page_id:
                return
            page_id = page.next_page_id

    async def rename(self, conversation_id: str, title: str) -> Conversation:
        answer = await self.request("PATCH", _path(conversation_id), json={"title": title})
        return Conversation.from_json(answer)

    async def delete(self, conversation_id: str) -> None:
        """Stop it if it runs, then delete it with its events."""
        await self.request("DELETE", _path(conversation_id))

    # -- talking to the agent, control -----------------------------------------------

    async def send(self, conversation_id: str, text: str) -> int:
        """A user message (it starts a run when none is active); returns its event id."""
        answer = await self.request(
            "POST", _path(conversation_id, "/message"), json={"message": text}
        )
        return int(answer["event_id"])

    async def post_event(self, conversation_id: str, event: Event) -> int:
        """A user action in wire shape; returns its event id."""
        answer = await self.request("POST", _path(conversation_id, "/events"), json=event)
        return int(answer["event_id"])

    async def control(
        self, conversation_id: str, command: Literal["start", "pause", "resume", "stop"]
    ) -> ControlResult:
        """``resume`` also raises a limit the agent is held at, or starts a run."""
        answer = await self.request("POST", _path(conversation_id, f"/{command}"))
        return ControlResult(
            answer["conversation_id"],
            answer["conversation_status"],
            answer.get("agent_state"),
            answer.get("queue_position"),
        )

    async def plan(self, conversation_id: str) -> builtins.list[dict[str, Any]]:
        """The current task-tracking plan: ``[{id, title, status, notes}, ...]``."""
        answer = await self.request("GET", _path(conversation_id, "/plan"))
        return list(answer["tasks"])

    # -- history ---------------------------------------------------------------------

    async def events_page(
        self,
        conversation_id: str,
        *,
        start_id: int = 0,
        end_id: int | None = None,
        reverse: bool = False,
        limit: int = PAGE_LIMIT,
        **filters: Any,
    ) -> EventPage:
        params: dict[str, Any] = {"start_id": start_id, "limit": limit, **filter_params(**filters)}
        if end_id is not None:
            params["end_id"] = end_id
        if reverse:
            params["reverse"] = "true"
        answer = await self.request("GET", _path(conversation_id, "/events"), params=params)
        return EventPage(answer["events"], bool(answer["has_more"]))

    async def events(
        self, conversation_id: str, *, after: int = -1, **filters: Any
    ) -> AsyncIterator[Event]:
        """Every stored event after ``after`` (that matches ``filters``), in id order,
        page after page. Ends at the newest; `watch` goes on live."""
        start = after + 1
        while True:
            page = await self.events_page(conversation_id, start_id=start, **filters)
            for event in page.events:
                yield event
            if not page.has_more or not page.events:
                return
            start = int(page.events[-1]["id"]) + 1

    async def count(self, conversation_id: str, **filters: Any) -> int:
        answer = await self.request(
            "GET", _path(conversation_id, "/events/count"), params=filter_params(**filters)
        )
        return int(answer["count"])

    async def search_page(
        self, q: str, *, limit: int = 20, cursor: str | None = None
    ) -> SearchPage:
        """Full-text search over your conversations, newest first."""
        params: dict[str, Any] = {"q": q, "limit": limit}
        if cursor:
            params["cursor"] = cursor
        answer = await self.request("GET", "/api/events/search", params=params)
        hits = [
            SearchHit(hit["conversation_id"], hit.get("conversation_title") or "", hit["event"])
            for hit in answer["results"]
        ]
        return SearchPage(hits, answer.get("next_cursor"), int(answer.get("pending") or 0))

    async def search(self, q: str) -> AsyncIterator[SearchHit]:
        """Every hit, page after page."""
        cursor: str | None = None
        while True:
            page = await self.search_page(q, limit=PAGE_LIMIT, cursor=cursor)
            for hit in page.hits:
                yield hit
            if not page.next_cursor:
                return
            cursor = page.next_cursor

    # -- recordings ------------------------------------------------------------------

    async def export(
        self, conversation_id: str, *, include_hidden: bool = False
    ) -> AsyncIterator[bytes]:
        """The conversation's trajectory as JSON Lines, in chunks as the server streams
        them (one event per line; a chunk may end mid-line)."""
        params = {"format": "jsonl", "include_hidden": "true" if include_hidden else "false"}
        try:
            async with self._http.stream(
                "GET", _path(conversation_id, "/trajectory"), params=params
            ) as response:
                if not response.is_success:
                    await response.aread()
                    _answer(response)
                async for chunk in response.aiter_bytes():
                    yield chunk
        except httpx2.TransportError as exc:
            raise ServerUnreachable(f"cannot reach {self.url}: {exc}") from exc

    async def import_recording(
        self,
        content: bytes | AsyncIterable[bytes],
        *,
        lines: bool = False,
        title: str | None = None,
        conversation_id: str | None = None,
        size: int | None = None,
    ) -> Imported:
        """A recording (a JSON trajectory, or JSON Lines when ``lines``) becomes a new
        conversation, copied as recorded. ``size``: the length of a streamed body."""
        params = {k: v for k, v in (("title", title), ("conversation_id", conversation_id)) if v}
        headers = {"Content-Type": "application/x-ndjson" if lines else "application/json"}
        if size is not None:
            headers["Content-Length"] = str(size)
        answer = await self.request(
            "POST", "/api/conversations/import", content=content, params=params, headers=headers
        )
        return Imported(answer["conversation_id"], int(answer["events"]))

    # -- the server ------------------------------------------------------------------

    async def health(self) -> dict[str, Any]:
        """``{"status": "ok", "keys_required": bool}``."""
        answer: dict[str, Any] = await self.request("GET", "/api/health")
        return answer

    def watch(
        self,
        conversation_id: str,
        *,
        after: int = -1,
        transport: Transport = "websocket",
        give_up_after: float | None = None,
    ) -> AsyncIterator[Event]:
        """The conversation's events after ``after``, stored ones first, then live, for
        as long as you iterate. A dropped connection (a network cut, a server restart) is
        resumed from the last event yielded: every event comes once, in order. Over the
        plain WebSocket (default) or Socket.IO (``pip install 'threadline[socketio]'``).
        Raises `ServerUnreachable` when the server stays away longer than
        ``give_up_after`` seconds (default: keep trying), and the server's refusal
        (`NotFound`, `Unauthorized`, ...) as a typed error."""
        return watch(
            self.url,
            conversation_id,
            after=after,
            api_key=self.api_key,
            transport=transport,
            give_up_after=give_up_after,
        )


def _path(conversation_id: str, rest: str = "") -> str:
    return f"/api/conversations/{conversation_id}{rest}"


def _answer(response: httpx2.Response) -> Any:
    if response.is_success:
        if not response.content:
            return None
        try:
            return orjson.loads(response.content)
        except orjson.JSONDecodeError:
            return response.text
    try:
        body = orjson.loads(response.content)
    except orjson.JSONDecodeError:
        body = None
    raise api_error(
        response.status_code,
        body,
        reason=response.reason_phrase,
        retry_after=response.headers.get("retry-after"),
    )
