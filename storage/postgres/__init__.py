"""The PostgreSQL backend (asyncpg): the scale-out store behind the same protocols."""

from storage.postgres.store import PostgresStorage

__all__ = ["PostgresStorage"]
