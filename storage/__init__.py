"""Stores behind small Protocols: the append-only event log, conversations, full-text
search and live subscriptions. SQLite (aiosqlite) is the embedded default."""

from storage.errors import (
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    InvalidSearchQuery,
    StorageClosed,
    StorageError,
)
from storage.models import (
    ConversationPage,
    ConversationPatch,
    ConversationRecord,
    ConversationStatus,
    EventPage,
    NewConversation,
    SearchHit,
    SearchResults,
    StoredEvent,
)
from storage.protocols import MAX_PAGE, ConversationStore, EventLog, Storage
from storage.subscription import Subscription, SubscriptionHub

__all__ = [
    "MAX_PAGE",
    "ConversationExists",
    "ConversationNotFound",
    "ConversationPage",
    "ConversationPatch",
    "ConversationRecord",
    "ConversationStatus",
    "ConversationStore",
    "EventLog",
    "EventPage",
    "InvalidCursor",
    "InvalidSearchQuery",
    "NewConversation",
    "SearchHit",
    "SearchResults",
    "Storage",
    "StorageClosed",
    "StorageError",
    "StoredEvent",
    "Subscription",
    "SubscriptionHub",
]
