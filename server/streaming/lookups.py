"""`ConversationLookups`: the conversation a stream opens on, read once per second per
conversation however many clients connect.

Every stream open needs the conversation's record (does it exist, is it the caller's,
when was it created). Read from the store for each client, a reconnect storm of a
thousand queued a thousand reads on the store's four reader connections: each read
waits for its worker thread to get the GIL from a busy event loop, so the queue grew to
seconds, and every REST request and health check needing a read waited behind it. Here
concurrent opens of one conversation share one read, and its answer serves further
opens for `LOOKUP_SECONDS`.

What a record answers for a stream open never changes while the conversation exists
(id, owner, creation time), so the only staleness is a deletion: `forget` drops a
deleted conversation at once (this process's deletes), and a deletion by another
process (PostgreSQL, ``--workers``) is seen within `LOOKUP_SECONDS`, like the race a
read has with a delete anyway. A missing conversation is never remembered.
"""

from __future__ import annotations

import asyncio
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from server.auth import User, can_see, scoped_id
from server.errors import NotFound
from server.shared_reads import shared_read
from storage import ConversationNotFound, ConversationRecord, Storage

LOOKUP_SECONDS = 1.0
MAX_REMEMBERED = 1024


@dataclass(slots=True)
class _Lookup:
    started: float
    record: asyncio.Future[ConversationRecord]


class ConversationLookups:
    def __init__(
        self,
        storage: Storage,
        *,
        seconds: float = LOOKUP_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._storage = storage
        self._seconds = seconds
        self._clock = clock
        self._lookups: OrderedDict[str, _Lookup] = OrderedDict()

    async def visible(self, user: User, conversation_id: str) -> ConversationRecord:
        """``user``'s conversation by the id they know it by (as
        `server.auth.visible_conversation`). Raises `NotFound`."""
        store_id = scoped_id(user, conversation_id)
        lookup = self._lookups.get(store_id)
        if lookup is None or self._clock() - lookup.started > self._seconds:
            lookup = _Lookup(self._clock(), shared_read(self._storage.get_conversation(store_id)))
            self._lookups[store_id] = lookup
            self._lookups.move_to_end(store_id)
            while len(self._lookups) > MAX_REMEMBERED:
                self._lookups.popitem(last=False)
        try:
            record = await asyncio.shield(lookup.record)
        except ConversationNotFound:
            self._drop(store_id, lookup)
            raise NotFound(f"conversation {conversation_id!r} not found") from None
        except BaseException:
            if lookup.record.done():  # the read failed: the next open reads again
                self._drop(store_id, lookup)
            raise
        if not can_see(user, record):
            raise NotFound(f"conversation {conversation_id!r} not found")
        return record

    def forget(self, store_id: str) -> None:
        """The conversation was deleted: the next open reads the store."""
        self._lookups.pop(store_id, None)

    def _drop(self, store_id: str, lookup: _Lookup) -> None:
        if self._lookups.get(store_id) is lookup:
            del self._lookups[store_id]
