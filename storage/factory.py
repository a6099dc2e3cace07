"""Open a store from a URL: ``sqlite:///path/to/dir`` (or a bare directory path), or
``postgresql://user:password@host:port/database[?schema=name]``."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit

from storage.protocols import Storage


async def open_storage(url: str) -> Storage:
    """Raises `ValueError` for a scheme this build does not know."""
    parts = urlsplit(url)
    if parts.scheme in ("", "sqlite"):
        from storage.sqlite import SqliteStorage

        directory = parts.path if parts.scheme else url
        return await SqliteStorage.open(Path(directory))
    if parts.scheme in ("postgres", "postgresql"):
        from storage.postgres import PostgresStorage

        return await PostgresStorage.open(url)
    raise ValueError(
        f"unknown storage URL scheme {parts.scheme!r}; use sqlite:///<directory> or "
        "postgresql://..."
    )
