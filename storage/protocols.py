"""The store contracts every backend implements (SQLite embedded, PostgreSQL scale-out).

The one ordering rule: each conversation's events carry the gapless ids 0, 1, 2, ...
assigned at append; an event is visible to readers and subscribers only once durable.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from typing import Protocol, runtime_checkable

from events import EventBase, EventFilter
from storage.automation import (
    DeliveryPage,
    DeliveryRecord,
    NewDelivery,
    NewSchedule,
    NewTask,
    NewWebhook,
    SchedulePage,
    SchedulePatch,
    ScheduleRecord,
    TaskPage,
    TaskPatch,
    TaskRecord,
    WebhookRecord,
)
from storage.cluster import ClusterLedger
from storage.models import (
    ApiKeyRecord,
    ConversationPage,
    ConversationPatch,
    ConversationRecord,
    EventPage,
    NewConversation,
    SearchResults,
    StoredEvent,
)
from storage.subscription import LogObserver, Subscription

MAX_PAGE = 100


@runtime_checkable
class EventLog(Protocol):
    async def append(
        self, conversation_id: str, event: EventBase, *, patch: ConversationPatch | None = None
    ) -> StoredEvent:
        """Append one event; return it with its id once it is durable.

        The event's own ``id`` is ignored; its ``timestamp`` is kept when set (imported
        history) and otherwise assigned, never earlier than the conversation's previous
        event nor than any earlier timestamp up to now (a kept timestamp later than now
        does not drag later ones forward). ``patch`` is written to the conversation's
        record in the same transaction (a state change: the log and the record never
        disagree). Raises `ConversationNotFound`, `StorageFull`, `StorageClosed`.
        """
        ...

    async def append_many(
        self, conversation_id: str, events: Sequence[EventBase]
    ) -> list[StoredEvent]:
        """Append several events atomically, with consecutive ids."""
        ...

    async def search_events(
        self,
        conversation_id: str,
        *,
        start_id: int = 0,
        end_id: int | None = None,
        reverse: bool = False,
        filter: EventFilter | None = None,
        limit: int = MAX_PAGE,
    ) -> EventPage:
        """Events with ``start_id <= id <= end_id`` matching ``filter``, in id order
        (descending when ``reverse``), at most ``limit`` (1..100).

        Walking ``next_cursor`` while appends continue never skips or repeats an event.
        Raises `ConversationNotFound`, `ValueError` for a limit out of range.
        """
        ...

    async def count_events(
        self,
        conversation_id: str,
        *,
        start_id: int = 0,
        end_id: int | None = None,
        filter: EventFilter | None = None,
    ) -> int:
        """How many events `search_events` would walk through with the same arguments."""
        ...

    async def latest_event_id(self, conversation_id: str) -> int:
        """The id of the newest durable event, or -1 when there is none."""
        ...

    async def search_all(
        self,
        query: str,
        *,
        conversation_ids: Sequence[str] | None = None,
        owner: str | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> SearchResults:
        """Full-text search across conversations (narrowed to ``conversation_ids`` and/or
        to one ``owner``'s conversations), newest first. Words are matched whole;
        ``"quoted phrases"`` and a trailing ``*`` prefix work.
        Raises `InvalidSearchQuery`, `InvalidCursor`."""
        ...

    async def wait_indexed(self) -> None:
        """Return once every event durable at the time of the call is searchable."""
        ...

    def subscribe(self, conversation_id: str, after_id: int = -1) -> Subscription:
        """Events with id > ``after_id`` in order: first from the log, then live, with no
        gap and no duplicate. See `Subscription`."""
        ...


@runtime_checkable
class ConversationStore(Protocol):
    async def create_conversation(self, new: NewConversation) -> ConversationRecord:
        """Raises `ConversationExists` when the id is taken."""
        ...

    async def create_conversation_with_events(
        self, new: NewConversation, events: Iterable[EventBase]
    ) -> tuple[ConversationRecord, list[StoredEvent]]:
        """Create the conversation holding ``events`` (ids 0, 1, ...) in one transaction:
        both exist afterwards, or neither does.

        ``events`` is consumed before anything is written (possibly in a worker thread,
        so a large recording's validation does not hold the event loop), and an exception
        raised while iterating it writes nothing and propagates. Each event's ``timestamp`` is kept
        when set and otherwise assigned; a timestamp later than now never moves the
        clock later appends are stamped by. Raises `ConversationExists`.
        """
        ...

    async def get_conversation(self, conversation_id: str) -> ConversationRecord:
        """Raises `ConversationNotFound`."""
        ...

    async def list_conversations(
        self, *, owner: str | None = None, limit: int = 20, cursor: str | None = None
    ) -> ConversationPage:
        """Newest first; ``owner`` narrows to one user's conversations."""
        ...

    async def update_conversation(
        self, conversation_id: str, patch: ConversationPatch
    ) -> ConversationRecord:
        """Write the fields set on ``patch`` and bump ``updated_at``."""
        ...

    async def delete_conversation(self, conversation_id: str) -> None:
        """Delete the conversation and all its events; its subscriptions end."""
        ...


@runtime_checkable
class ApiKeyStore(Protocol):
    """Keys are stored as digests; the caller hashes (see server.auth)."""

    async def add_api_key(self, user: str, digest: bytes, label: str = "") -> ApiKeyRecord: ...

    async def find_api_key(self, digest: bytes) -> ApiKeyRecord | None:
        """The key with this digest, unless revoked."""
        ...

    async def list_api_keys(self, user: str | None = None) -> list[ApiKeyRecord]: ...

    async def revoke_api_key(self, key_id: int) -> None:
        """Raises `ApiKeyNotFound`."""
        ...

    async def count_api_keys(self, *, include_revoked: bool = False) -> int:
        """Keys not revoked (all keys ever created with ``include_revoked``)."""
        ...


@runtime_checkable
class TaskStore(Protocol):
    """Tasks: one per conversation, under the conversation's id. Deleting the
    conversation deletes its task."""

    async def create_task(
        self, task: NewTask, conversation: NewConversation, events: Sequence[EventBase]
    ) -> tuple[TaskRecord, ConversationRecord, list[StoredEvent]]:
        """The conversation, its first ``events`` (ids 0, 1, ...) and the task, in one
        transaction. Raises `ConversationExists` (nothing written)."""
        ...

    async def get_task(self, task_id: str) -> TaskRecord:
        """Raises `TaskNotFound`."""
        ...

    async def list_tasks(
        self,
        *,
        owner: str | None = None,
        kinds: Collection[str] | None = None,
        statuses: Collection[str] | None = None,
        limit: int = 20,
        cursor: str | None = None,
    ) -> TaskPage:
        """Newest first; each argument given narrows (``owner`` None: everyone's).
        Raises `InvalidCursor`, `ValueError` for a limit out of 1..100."""
        ...

    async def update_task(
        self,
        task_id: str,
        patch: TaskPatch,
        event: EventBase,
        *,
        only_from: Collection[str] | None = None,
    ) -> tuple[TaskRecord, StoredEvent]:
        """Write ``patch`` and append ``event`` to the task's conversation, in one
        transaction (a task's state change is an event of its log). With ``only_from``,
        only while the task's status is one of them, else `TaskStateConflict`. Raises
        `TaskNotFound`; nothing is written when anything is raised."""
        ...


@runtime_checkable
class ScheduleStore(Protocol):
    """Schedules, by flow id (unique); each keeps its log in the conversation named by its
    ``id``. Deleting that conversation deletes the schedule."""

    async def create_schedule(
        self, schedule: NewSchedule, log: NewConversation, events: Sequence[EventBase]
    ) -> tuple[ScheduleRecord, list[StoredEvent]]:
        """The log conversation with its first ``events`` and the schedule, in one
        transaction. Raises `ScheduleExists`, `ConversationExists` (nothing written)."""
        ...

    async def get_schedule(self, flow_id: str) -> ScheduleRecord:
        """Raises `ScheduleNotFound`."""
        ...

    async def list_schedules(
        self, *, owner: str | None = None, limit: int = 100, cursor: str | None = None
    ) -> SchedulePage:
        """Oldest first (``owner`` None: everyone's). Raises `InvalidCursor`."""
        ...

    async def update_schedule(
        self, flow_id: str, patch: SchedulePatch, event: EventBase
    ) -> tuple[ScheduleRecord, StoredEvent]:
        """Write ``patch`` and append ``event`` to the schedule's log, in one
        transaction. Raises `ScheduleNotFound`."""
        ...

    async def delete_schedule(self, flow_id: str, event: EventBase) -> StoredEvent:
        """Delete the schedule and append ``event`` to its log (which stays), in one
        transaction. Raises `ScheduleNotFound`."""
        ...


@runtime_checkable
class WebhookStore(Protocol):
    """At most one webhook per conversation; deliveries are every attempt, kept."""

    async def put_webhook(self, webhook: NewWebhook) -> WebhookRecord:
        """Set the conversation's webhook (replacing any). Raises `ConversationNotFound`."""
        ...

    async def get_webhook(self, conversation_id: str) -> WebhookRecord | None: ...

    async def list_webhooks(self, *, after_id: int = 0, limit: int = 100) -> list[WebhookRecord]:
        """Every webhook with id > ``after_id``, in id order."""
        ...

    async def delete_webhook(self, conversation_id: str) -> bool:
        """True when there was one."""
        ...

    async def record_delivery(
        self, delivery: NewDelivery, *, delivered_through: int | None = None
    ) -> DeliveryRecord:
        """Record one attempt; with ``delivered_through``, move the webhook's cursor there
        in the same transaction (never backwards)."""
        ...

    async def list_deliveries(
        self,
        *,
        origin: str | None = None,
        conversation_id: str | None = None,
        limit: int = 20,
        before: int | None = None,
    ) -> DeliveryPage:
        """Newest first, narrowed by ``origin`` and/or ``conversation_id``."""
        ...


@runtime_checkable
class Storage(
    EventLog, ConversationStore, ApiKeyStore, TaskStore, ScheduleStore, WebhookStore, Protocol
):
    """Everything a server needs from one backend."""

    def observe(self, observer: LogObserver) -> None:
        """Tell ``observer`` of every append and every live delivery (for metrics)."""
        ...

    def subscriber_lags(self) -> list[int]:
        """Per live subscriber: how many durable events it has yet to take."""
        ...

    def index_lag(self) -> int:
        """Events appended and not yet searchable."""
        ...

    async def check_writable(self) -> None:
        """Raises a `StorageError` (`StorageFull`, `StorageClosed`, ...) when a write
        would fail now."""
        ...

    async def total_cost_micros(self) -> int:
        """The cost of every stored conversation, in micro-units of the currency."""
        ...

    def cluster(self) -> ClusterLedger | None:
        """The ledger several server processes share (None: this store has one process)."""
        ...

    async def close(self) -> None:
        """Finish pending writes, then release every connection. Idempotent."""
        ...
