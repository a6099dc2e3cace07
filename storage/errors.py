"""Storage errors. Backends translate driver errors (sqlite3, asyncpg) into these at
their boundary; callers never see a driver type.

    ThreadlineError
    └── StorageError
        ├── ConversationNotFound   no conversation with that id
        ├── ConversationExists     create with an id already taken
        ├── ApiKeyNotFound         revoke of a key that does not exist
        ├── TaskNotFound           no task with that id
        ├── TaskStateConflict      a task update whose expected status no longer holds
        ├── ScheduleNotFound       no schedule with that flow id
        ├── ScheduleExists         create with a flow id already taken
        ├── InvalidCursor          a page cursor this store did not issue
        ├── InvalidSearchQuery     a full-text query with nothing to search for
        ├── StorageInUse           another process owns this data directory
        ├── StorageFull            the disk (or quota) is full; nothing was written
        └── StorageClosed          the store was closed; no more reads or writes
"""

from __future__ import annotations

from events.errors import ThreadlineError


class StorageError(ThreadlineError):
    """Root of the storage branch."""


class ConversationNotFound(StorageError, LookupError):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"conversation {conversation_id!r} does not exist")


class ConversationExists(StorageError):
    def __init__(self, conversation_id: str) -> None:
        self.conversation_id = conversation_id
        super().__init__(f"conversation {conversation_id!r} already exists")


class InvalidCursor(StorageError, ValueError):
    def __init__(self, cursor: str) -> None:
        self.cursor = cursor
        super().__init__(f"cursor {cursor!r} is not one this store issued")


class InvalidSearchQuery(StorageError, ValueError):
    pass


class StorageClosed(StorageError):
    def __init__(self) -> None:
        super().__init__("the store is closed")


class ApiKeyNotFound(StorageError, LookupError):
    def __init__(self, key_id: int) -> None:
        self.key_id = key_id
        super().__init__(f"there is no API key {key_id}")


class StorageInUse(StorageError):
    pass


class StorageFull(StorageError):
    """The write was refused for lack of space and rolled back; retry once space returns."""


class TaskNotFound(StorageError, LookupError):
    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        super().__init__(f"task {task_id!r} does not exist")


class TaskStateConflict(StorageError):
    """The task's status was not one the update expected; nothing was written."""

    def __init__(self, task_id: str, status: str) -> None:
        self.task_id = task_id
        self.status = status
        super().__init__(f"task {task_id!r} is {status}")


class ScheduleNotFound(StorageError, LookupError):
    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        super().__init__(f"schedule {flow_id!r} does not exist")


class ScheduleExists(StorageError):
    def __init__(self, flow_id: str) -> None:
        self.flow_id = flow_id
        super().__init__(f"a schedule for flow {flow_id!r} already exists")
