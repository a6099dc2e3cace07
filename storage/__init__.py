"""Stores behind small Protocols: the append-only event log, conversations, full-text
search and live subscriptions. SQLite (aiosqlite) is the embedded default."""

from storage.errors import (
    ApiKeyNotFound,
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    InvalidSearchQuery,
    StorageClosed,
    StorageError,
    StorageFull,
    StorageInUse,
)
from storage.models import (
    ApiKeyRecord,
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
from storage.protocols import MAX_PAGE, ApiKeyStore, ConversationStore, EventLog, Storage
from storage.subscription import LogObserver, Subscription, SubscriptionHub

__all__ = [
    "MAX_PAGE",
    "ApiKeyNotFound",
    "ApiKeyRecord",
    "ApiKeyStore",
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
    "LogObserver",
    "NewConversation",
    "SearchHit",
    "SearchResults",
    "Storage",
    "StorageClosed",
    "StorageError",
    "StorageFull",
    "StorageInUse",
    "StoredEvent",
    "Subscription",
    "SubscriptionHub",
]
