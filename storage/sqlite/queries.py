"""SQL for reading the log: the page and count queries and the full-text query.

Every page query is a range scan of one conversation's ``(conv, id)`` index (or of
``(conv, kind, id)`` for a single included kind), stopping after ``limit + 1`` matches.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import orjson

from events import EventFilter
from storage.common import search_terms
from storage.records import micros

CONVERSATION_KEY = "(SELECT key FROM conversations WHERE id = ?)"


def _where(
    conversation_id: str, start_id: int, end_id: int | None, filter: EventFilter | None
) -> tuple[str, list[Any]]:
    clauses = [f"conv = {CONVERSATION_KEY}"]
    params: list[Any] = [conversation_id]
    if start_id > 0:
        clauses.append("id >= ?")
        params.append(start_id)
    if end_id is not None:
        clauses.append("id <= ?")
        params.append(end_id)
    if filter is not None:
        included = sorted(filter.included_kinds)
        if included:
            clauses.append(f"kind IN ({', '.join('?' * len(included))})")
            params.extend(included)
        excluded = sorted(filter.excluded_kinds)
        if excluded:
            clauses.append(f"kind NOT IN ({', '.join('?' * len(excluded))})")
            params.extend(excluded)
        if filter.source is not None:
            clauses.append("source = ?")
            params.append(filter.source)
        if filter.start_date is not None:
            clauses.append("ts_us >= ?")
            params.append(micros(filter.start_date))
        if filter.end_date is not None:
            clauses.append("ts_us <= ?")
            params.append(micros(filter.end_date))
        if filter.exclude_hidden:
            clauses.append("hidden = 0")
        if filter.folded_query:
            clauses.append("instr(text, ?) > 0")
            params.append(filter.folded_query)
    return " AND ".join(clauses), params


def page_query(
    conversation_id: str,
    start_id: int,
    end_id: int | None,
    reverse: bool,
    filter: EventFilter | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """``SELECT id, data`` of up to ``limit`` rows (callers ask one more to see if more)."""
    where, params = _where(conversation_id, start_id, end_id, filter)
    order = "DESC" if reverse else "ASC"
    params.append(limit)
    return f"SELECT id, data FROM events WHERE {where} ORDER BY id {order} LIMIT ?", params


def catch_up_query(
    conversation_id: str, after_id: int, limit: int, max_bytes: int
) -> tuple[str, list[Any]]:
    """``(id, data, scanned)`` of the events after ``after_id``: at most ``limit`` and at
    most ``max_bytes`` of data (the first event whatever its size). ``scanned`` counts the
    candidates looked at (up to ``limit``): more than the rows returned means more remain.
    Sizes come from ``length(data)``, which SQLite reads without loading the data, so
    events beyond the bound are never loaded."""
    return (
        "WITH conv(key) AS (SELECT key FROM conversations WHERE id = ?), "
        "sizes AS (SELECT id, length(data) AS size FROM events "
        "WHERE conv = (SELECT key FROM conv) AND id > ? ORDER BY id LIMIT ?), "
        "running AS (SELECT id, sum(size) OVER (ORDER BY id) AS total, "
        "row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS scanned FROM sizes) "
        "SELECT e.id, e.data, r.scanned FROM running AS r JOIN events AS e "
        "ON e.conv = (SELECT key FROM conv) AND e.id = r.id "
        "WHERE r.n = 1 OR r.total <= ? ORDER BY e.id",
        [conversation_id, after_id, limit, max_bytes],
    )


def count_query(
    conversation_id: str, start_id: int, end_id: int | None, filter: EventFilter | None
) -> tuple[str, list[Any]]:
    where, params = _where(conversation_id, start_id, end_id, filter)
    return f"SELECT count(*) FROM events WHERE {where}", params


def fts_match_expression(query: str) -> str:
    """A user's query (`storage.common.search_terms`) as an FTS5 expression."""
    expressions = []
    for term in search_terms(query):
        quoted = '"' + " ".join(term.words) + '"'
        expressions.append(quoted + "*" if term.prefix else quoted)
    return " AND ".join(expressions)


def search_all_query(
    match: str,
    conversation_ids: Sequence[str] | None,
    owner: str | None,
    before_seq: int | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """Newest-first hits ``(seq, conversation id, event id, data, title)`` from the index."""
    clauses = ["f.events_fts MATCH ?"]
    params: list[Any] = [match]
    if before_seq is not None:
        clauses.append("f.rowid < ?")
        params.append(before_seq)
    if conversation_ids is not None:
        clauses.append("c.id IN (SELECT value FROM json_each(?))")
        params.append(_json_list(conversation_ids))
    if owner is not None:
        clauses.append("c.owner = ?")
        params.append(owner)
    params.append(limit)
    return (
        "SELECT e.seq, c.id, e.id, e.data, c.title FROM search.events_fts AS f "
        "JOIN events AS e ON e.seq = f.rowid JOIN conversations AS c ON c.key = e.conv "
        f"WHERE {' AND '.join(clauses)} ORDER BY f.rowid DESC LIMIT ?",
        params,
    )


def _json_list(values: Sequence[str]) -> str:
    return orjson.dumps(list(values)).decode()
