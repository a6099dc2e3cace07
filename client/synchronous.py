"""`Threadline`: the same client for code that is not async.

It drives an `AsyncThreadline` on an event loop of its own (one per client; no thread),
so both have one code path. Not for use inside a running event loop: there, use
`AsyncThreadline`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
from collections.abc import AsyncIterator, Awaitable, Iterable, Iterator
from types import TracebackType
from typing import Any, Literal, TypeVar

from client.asynchronous import AsyncThreadline
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
from client.watching import Transport

T = TypeVar("T")


class Threadline:
    def __init__(
        self, url: str | None = None, *, api_key: str | None = None, timeout: float = 30.0
    ) -> None:
        self._loop = asyncio.new_event_loop()
        self._async = self._run(_make(url, api_key, seconds=timeout))
        self.url = self._async.url
        self.api_key = self._async.api_key

    def __enter__(self) -> Threadline:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        trace: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if not self._loop.is_closed():
            self._run(self._async.aclose())
            self._loop.close()

    def _run(self, work: Awaitable[T]) -> T:
        task = asyncio.ensure_future(work, loop=self._loop)
        try:
            return self._loop.run_until_complete(task)
        except BaseException:
            # Ctrl-C lands in the loop with the task mid-step: end it before anything
            # else runs on this loop (closing a watch, say).
            if not task.done():
                task.cancel()
                with contextlib.suppress(BaseException):
                    self._loop.run_until_complete(task)
            raise

    def _iterate(self, items: AsyncIterator[T]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(items))
                except StopAsyncIteration:
                    return
        finally:
            if not self._loop.is_closed():
                self._run(items.aclose())  # type: ignore[attr-defined]

    def request(self, method: str, path: str, **options: Any) -> Any:
        return self._run(self._async.request(method, path, **options))

    def create(self, message: str | None = None, **options: Any) -> Conversation:
        """See `AsyncThreadline.create`."""
        return self._run(self._async.create(message, **options))

    def get(self, conversation_id: str) -> Conversation:
        return self._run(self._async.get(conversation_id))

    def list(self, *, limit: int = 20, page_id: str | None = None) -> ConversationList:
        return self._run(self._async.list(limit=limit, page_id=page_id))

    def conversations(self) -> Iterator[Conversation]:
        return self._iterate(self._async.conversations())

    def rename(self, conversation_id: str, title: str) -> Conversation:
        return self._run(self._async.rename(conversation_id, title))

    def delete(self, conversation_id: str) -> None:
        self._run(self._async.delete(conversation_id))

    def send(self, conversation_id: str, text: str) -> int:
        return self._run(self._async.send(conversation_id, text))

    def post_event(self, conversation_id: str, event: Event) -> int:
        return self._run(self._async.post_event(conversation_id, event))

    def control(
        self, conversation_id: str, command: Literal["start", "pause", "resume", "stop"]
    ) -> ControlResult:
        return self._run(self._async.control(conversation_id, command))

    def plan(self, conversation_id: str) -> builtins.list[dict[str, Any]]:
        return self._run(self._async.plan(conversation_id))

    def events_page(self, conversation_id: str, **options: Any) -> EventPage:
        return self._run(self._async.events_page(conversation_id, **options))

    def events(self, conversation_id: str, *, after: int = -1, **filters: Any) -> Iterator[Event]:
        return self._iterate(self._async.events(conversation_id, after=after, **filters))

    def count(self, conversation_id: str, **filters: Any) -> int:
        return self._run(self._async.count(conversation_id, **filters))

    def search_page(self, q: str, *, limit: int = 20, cursor: str | None = None) -> SearchPage:
        return self._run(self._async.search_page(q, limit=limit, cursor=cursor))

    def search(self, q: str) -> Iterator[SearchHit]:
        return self._iterate(self._async.search(q))

    def export(self, conversation_id: str, *, include_hidden: bool = False) -> Iterator[bytes]:
        return self._iterate(self._async.export(conversation_id, include_hidden=include_hidden))

    def import_recording(
        self, content: bytes | Iterable[bytes], *, lines: bool = False, **options: Any
    ) -> Imported:
        body = content if isinstance(content, bytes) else _aiter(content)
        return self._run(self._async.import_recording(body, lines=lines, **options))

    def health(self) -> dict[str, Any]:
        return self._run(self._async.health())

    def watch(
        self,
        conversation_id: str,
        *,
        after: int = -1,
        transport: Transport = "websocket",
        give_up_after: float | None = None,
    ) -> Iterator[Event]:
        """See `AsyncThreadline.watch`."""
        return self._iterate(
            self._async.watch(
                conversation_id, after=after, transport=transport, give_up_after=give_up_after
            )
        )


async def _make(url: str | None, api_key: str | None, *, seconds: float) -> AsyncThreadline:
    return AsyncThreadline(url, api_key=api_key, timeout=seconds)  # on the client's loop


async def _aiter(chunks: Iterable[bytes]) -> AsyncIterator[bytes]:
    for chunk in chunks:
        yield chunk
