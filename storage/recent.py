"""`RecentEvents`: the newest events of recently written conversations, in memory.

A subscriber that (re)connects a few events behind — a browser after a network blip,
a thousand of them after a proxy restart — catches up from here instead of reading the
log: no database read per subscriber, however many reconnect at once. The tail is fed
by the log's publish (so it only ever holds durable events) and bounded per
conversation (in events and bytes) and in total (bytes; the least recently written
conversations go first). A subscriber further behind than the tail reaches reads the
log as before.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Sequence
from dataclasses import dataclass, field

from storage.models import StoredEvent

PER_CONVERSATION = 256
PER_CONVERSATION_BYTES = 256 * 1024
TOTAL_BYTES = 32 * 1024 * 1024


@dataclass(slots=True)
class _Tail:
    events: deque[StoredEvent] = field(default_factory=deque)
    size: int = 0

    def push(self, event: StoredEvent) -> None:
        self.events.append(event)
        self.size += len(event.data)

    def pop_oldest(self) -> int:
        """Drop the oldest event; returns its size."""
        size = len(self.events.popleft().data)
        self.size -= size
        return size


class RecentEvents:
    def __init__(
        self,
        *,
        per_conversation: int = PER_CONVERSATION,
        per_conversation_bytes: int = PER_CONVERSATION_BYTES,
        total_bytes: int = TOTAL_BYTES,
    ) -> None:
        self._per_conversation = per_conversation
        self._per_conversation_bytes = per_conversation_bytes
        self._total_bytes = total_bytes
        self._tails: OrderedDict[str, _Tail] = OrderedDict()
        self.size = 0
        """Bytes held in all."""

    def add(self, conversation_id: str, events: Sequence[StoredEvent]) -> None:
        """Newly durable events of one conversation, in id order."""
        if not events:
            return
        tail = self._tails.pop(conversation_id, None) or _Tail()
        self._tails[conversation_id] = tail  # most recently written last
        if tail.events and events[0].id != tail.events[-1].id + 1:
            self.size -= tail.size  # not the next ones (cannot happen in one process)
            tail.events.clear()
            tail.size = 0
        for event in events:
            tail.push(event)
            self.size += len(event.data)
        while tail.events and (
            len(tail.events) > self._per_conversation
            or (tail.size > self._per_conversation_bytes and len(tail.events) > 1)
        ):
            self.size -= tail.pop_oldest()
        self._trim()

    def after(
        self, conversation_id: str, after_id: int, limit: int, max_bytes: int
    ) -> tuple[list[StoredEvent], bool] | None:
        """The events with id > ``after_id`` (at most ``limit`` and ``max_bytes``, at least
        one), and whether more remain; None when the tail does not reach back to
        ``after_id + 1`` (read the log instead)."""
        tail = self._tails.get(conversation_id)
        if tail is None or not tail.events:
            return None
        first = tail.events[0].id
        if after_id + 1 < first:
            return None
        page: list[StoredEvent] = []
        size = 0
        for index in range(after_id + 1 - first, len(tail.events)):
            event = tail.events[index]
            if len(page) == limit or (page and size + len(event.data) > max_bytes):
                return page, True
            page.append(event)
            size += len(event.data)
        return page, False

    def newest(self, conversation_id: str) -> int | None:
        """The id of the newest event held for the conversation, if any."""
        tail = self._tails.get(conversation_id)
        return tail.events[-1].id if tail is not None and tail.events else None

    def forget(self, conversation_id: str) -> None:
        tail = self._tails.pop(conversation_id, None)
        if tail is not None:
            self.size -= tail.size

    def _trim(self) -> None:
        while self.size > self._total_bytes and self._tails:
            _, oldest = self._tails.popitem(last=False)
            self.size -= oldest.size
