"""Cross-process notifications on PostgreSQL: LISTEN/NOTIFY.

Every append transaction ends with ``pg_notify(channel, "<process> <last id>
<conversation>")`` for each conversation it wrote. A NOTIFY is part of its transaction:
it is delivered only if the transaction commits, in commit order, so no process can
hear of an event that is not durable, and none misses one because the writer died
between its commit and a separate publish. Each process listens on one connection and
hands what other processes announce to its `RemoteFeed` (its own announcements are
dropped: its subscribers already have those events).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import asyncpg

from storage.errors import ConversationNotFound, StorageError
from storage.remote import RemoteFeed

logger = logging.getLogger(__name__)


def channel_for(schema: str | None) -> str:
    """One channel per schema: stores sharing a database do not hear each other."""
    return f"threadline_{(schema or 'public')[:40]}"


class Announcer:
    """What the writer adds to a transaction: one notification per conversation."""

    def __init__(self, channel: str | None) -> None:
        self.channel = channel
        """None: announce nothing (a process alone on its database)."""
        self.token = uuid.uuid4().hex[:12]
        """This process, so its listener can drop its own announcements."""

    def payloads(self, newest: dict[str, int]) -> list[str]:
        """One notification per conversation: "<process> <last id> <conversation>"."""
        return [f"{self.token} {last} {conversation}" for conversation, last in newest.items()]


class Listener:
    """Hears other processes' announcements on one connection. When that connection is
    lost (the database restarted, a network cut) it reconnects, backing off, and then
    asks the log how far each conversation watched here has got: what was announced
    while it was away is read, not lost."""

    def __init__(
        self,
        connect: Callable[[], Awaitable[asyncpg.Connection]],
        announcer: Announcer,
        feed: RemoteFeed,
        latest: Callable[[str], Awaitable[int]],
    ) -> None:
        self._connect = connect
        self._announcer = announcer
        self._feed = feed
        self._latest = latest
        self._connection: asyncpg.Connection | None = None
        self._reconnecting: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self) -> None:
        assert self._announcer.channel is not None
        connection = await self._connect()
        connection.add_termination_listener(self._lost)
        await connection.add_listener(self._announcer.channel, self._heard)
        self._connection = connection

    async def close(self) -> None:
        self._closed = True
        if self._reconnecting is not None:
            self._reconnecting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._reconnecting
        if self._connection is not None and not self._connection.is_closed():
            await self._connection.close()
        await self._feed.close()

    def _lost(self, connection: Any) -> None:
        if self._closed or connection is not self._connection or self._reconnecting:
            return
        logger.warning("lost the notification connection; reconnecting")
        self._reconnecting = asyncio.ensure_future(self._reconnect())

    async def _reconnect(self) -> None:
        delay = 0.2
        try:
            while not self._closed:
                try:
                    await self.start()
                    break
                except (asyncpg.PostgresError, asyncpg.InterfaceError, OSError) as exc:
                    logger.warning("could not listen again (retrying in %.1f s): %s", delay, exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)
            for conversation_id in self._feed.watched():
                try:
                    self._feed.announce(conversation_id, await self._latest(conversation_id))
                except (StorageError, ConversationNotFound):
                    continue  # deleted meanwhile: its subscribers are ended elsewhere
            logger.warning("listening again; watched conversations caught up")
        finally:
            self._reconnecting = None

    def _heard(self, connection: Any, pid: int, channel: str, payload: str) -> None:
        token, _, rest = payload.partition(" ")
        if token == self._announcer.token:
            return
        last, _, conversation_id = rest.partition(" ")
        try:
            self._feed.announce(conversation_id, int(last))
        except ValueError:
            logger.warning("ignored a malformed notification on %s: %r", channel, payload[:100])
