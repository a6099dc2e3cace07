"""Every live stream the server holds, so shutdown can end them all at once."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

from storage import Subscription


class StreamRegistry:
    def __init__(self) -> None:
        self._open: set[Subscription] = set()
        self.closing = False

    @contextlib.contextmanager
    def track(self, subscription: Subscription) -> Iterator[Subscription]:
        self._open.add(subscription)
        try:
            yield subscription
        finally:
            self._open.discard(subscription)
            subscription.close()

    def __len__(self) -> int:
        return len(self._open)

    def close_all(self) -> None:
        """End every stream: its iterator stops, its transport says goodbye."""
        self.closing = True
        for subscription in tuple(self._open):
            subscription.close()
