"""`KnownConversations`: conversations a write may go to without reading their record
first.

Posting an event to a conversation needs only that the caller may see it: the append
itself fails with `ConversationNotFound` when the conversation does not exist. Whether
the caller may see it depends on the record's owner, read from the store for every
request (a round trip to a reader thread, once per appended event). The owner of a
conversation whose id is in its owner's id space (``alice/x`` owned by ``alice``, ``x``
by the single user of a server without keys: every id this server makes) is named by
its id, so it can never change, not even if the conversation is deleted and made again:
such ids are remembered here once a record has shown it (a creation here, a read), and
a caller asking by its own scoped id may write to a remembered one without a read. Any
other record (none is made so) is never remembered: its owner is read each time.
"""

from __future__ import annotations

from collections import OrderedDict

from server.auth import User, public_id, scoped_id
from storage import ConversationRecord

MAX_KNOWN = 100_000


class KnownConversations:
    def __init__(self, size: int = MAX_KNOWN) -> None:
        self._size = size
        self._known: OrderedDict[str, None] = OrderedDict()

    def remember(self, record: ConversationRecord) -> None:
        """``record``'s id, if its owner is the one its id names."""
        if scoped_id(User(record.owner), public_id(record.id)) != record.id:
            return
        self._known[record.id] = None
        self._known.move_to_end(record.id)
        while len(self._known) > self._size:
            self._known.popitem(last=False)

    def vouches(self, user: User, store_id: str) -> bool:
        """Whether ``user`` may write to the conversation ``store_id`` (their scoped id
        for it), if it exists, without reading its record."""
        return user.name is None or store_id in self._known

    def forget(self, store_id: str) -> None:
        self._known.pop(store_id, None)
