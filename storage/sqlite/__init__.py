"""The embedded SQLite backend."""

from storage.sqlite.store import SqliteStorage

__all__ = ["SqliteStorage"]
