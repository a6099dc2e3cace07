"""`RemoteFeed`: events other processes appended, read once per process and published to
this process's subscribers.

Several server processes share one log. A process's own appends reach its subscribers
through the hub's publish; another process's arrive as a notification, "conversation C
has events up to N". The feed then reads the new events of C from the log — once, for
all local subscribers of C, a page at a time — and publishes them locally, so every
transport keeps using the one `subscribe()` primitive and a thousand watchers cost one
read. Notifications for a conversation are coalesced while its read is under way. A
conversation nobody here watches costs nothing but dropping its in-memory tail (which no
longer ends at the newest event).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from storage.models import StoredEvent
from storage.subscription import SubscriptionHub

logger = logging.getLogger(__name__)

ReadRange = Callable[[str, int, int], Awaitable[list[StoredEvent]]]
"""``read(conversation_id, after_id, limit)``: up to ``limit`` events after ``after_id``."""
PAGE = 100
RETRY_SECONDS = 1.0


class RemoteFeed:
    def __init__(self, hub: SubscriptionHub, read: ReadRange) -> None:
        self._hub = hub
        self._read = read
        self._wanted: dict[str, int] = {}
        """Conversation -> the newest id another process has announced."""
        self._readers: dict[str, asyncio.Task[None]] = {}

    def announce(self, conversation_id: str, up_to: int) -> None:
        """Another process appended ``conversation_id``'s events up to ``up_to``."""
        if self._hub.subscriber_count(conversation_id) == 0:
            self._hub.recent.forget(conversation_id)
            return
        self._wanted[conversation_id] = max(up_to, self._wanted.get(conversation_id, -1))
        if conversation_id not in self._readers:
            task = asyncio.ensure_future(self._catch_up(conversation_id))
            self._readers[conversation_id] = task

    def watched(self) -> list[str]:
        """Conversations with subscribers here."""
        return self._hub.watched()

    async def close(self) -> None:
        for task in tuple(self._readers.values()):
            task.cancel()
        await asyncio.gather(*self._readers.values(), return_exceptions=True)

    async def _catch_up(self, conversation_id: str) -> None:
        try:
            while True:
                after = self._hub.published_through(conversation_id)
                if after is None or after >= self._wanted.get(conversation_id, -1):
                    return
                events = await self._read(conversation_id, after, PAGE)
                if not events:
                    return
                self._hub.publish(conversation_id, events)
        except Exception as exc:
            logger.warning("could not follow %s from the log, retrying: %s", conversation_id, exc)
            wanted = self._wanted.get(conversation_id, -1)
            asyncio.get_running_loop().call_later(
                RETRY_SECONDS, self.announce, conversation_id, wanted
            )
        finally:
            self._readers.pop(conversation_id, None)
            self._wanted.pop(conversation_id, None)
