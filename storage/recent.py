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

from array import array
from collections import OrderedDict
from collections.abc import Sequence

from storage.models import StoredEvent

PER_CONVERSATION = 256
PER_CONVERSATION_BYTES = 256 * 1024
TOTAL_BYTES = 32 * 1024 * 1024


class _Tail:
    """One conversation's newest events, packed: their bytes end to end in one buffer
    and where each ends. Events kept as objects (a `StoredEvent`, its id, its id string
    and its bytes: four small blocks each) were replaced one by one all through a
    reconnect storm, so the survivors sat scattered over the storm's heap, each keeping
    a 1 MiB allocator arena from going back to the system. A buffer is a few large
    allocations, outside the small-object heap; catch-ups get fresh, short-lived
    `StoredEvent`s."""

    __slots__ = ("base", "data", "ends", "first_id")

    def __init__(self) -> None:
        self.first_id = 0
        self.base = 0
        """The position (counted since the tail began) of ``data[0]``."""
        self.data = bytearray()
        self.ends = array("q")
        """Where each held event ends, in positions counted since the tail began."""

    def __len__(self) -> int:
        return len(self.ends)

    @property
    def size(self) -> int:
        return len(self.data)

    @property
    def newest(self) -> int:
        return self.first_id + len(self.ends) - 1

    def push(self, event: StoredEvent) -> None:
        if not self.ends:
            self.first_id = event.id
        self.data += event.data
        self.ends.append(self.base + len(self.data))

    def pop_oldest(self) -> int:
        """Drop the oldest event; returns its size."""
        size = self.ends[0] - self.base
        del self.data[:size]
        del self.ends[0]
        self.base += size
        self.first_id += 1
        return size

    def clear(self) -> None:
        self.data = bytearray()
        self.ends = array("q")
        self.base = 0

    def event(self, conversation_id: str, index: int) -> StoredEvent:
        start = (self.ends[index - 1] if index else self.base) - self.base
        with memoryview(self.data) as view:
            data = bytes(view[start : self.ends[index] - self.base])
        return StoredEvent(conversation_id, self.first_id + index, data)

    def length(self, index: int) -> int:
        return self.ends[index] - (self.ends[index - 1] if index else self.base)


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
        tail = self._tails.get(conversation_id)
        if tail is None:
            tail = self._tails[conversation_id] = _Tail()
        else:
            self._tails.move_to_end(conversation_id)  # most recently written last
        if len(tail) and events[0].id != tail.newest + 1:
            self.size -= tail.size  # not the next ones (cannot happen in one process)
            tail.clear()
        for event in events:
            tail.push(event)
            self.size += len(event.data)
        while len(tail) and (
            len(tail) > self._per_conversation
            or (tail.size > self._per_conversation_bytes and len(tail) > 1)
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
        if tail is None or not len(tail):
            return None
        if after_id + 1 < tail.first_id:
            return None
        page: list[StoredEvent] = []
        size = 0
        for index in range(after_id + 1 - tail.first_id, len(tail)):
            length = tail.length(index)
            if len(page) == limit or (page and size + length > max_bytes):
                return page, True
            page.append(tail.event(conversation_id, index))
            size += length
        return page, False

    def newest(self, conversation_id: str) -> int | None:
        """The id of the newest event held for the conversation, if any."""
        tail = self._tails.get(conversation_id)
        return tail.newest if tail is not None and len(tail) else None

    def forget(self, conversation_id: str) -> None:
        tail = self._tails.pop(conversation_id, None)
        if tail is not None:
            self.size -= tail.size

    def _trim(self) -> None:
        while self.size > self._total_bytes and self._tails:
            _, oldest = self._tails.popitem(last=False)
            self.size -= oldest.size
