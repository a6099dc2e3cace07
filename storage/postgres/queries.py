"""SQL for reading the log on PostgreSQL: pages, counts, catch-up pages bounded in bytes,
and full-text search. Every page is a range scan of one conversation's ``(conv, id)``
primary key (or ``(conv, kind, id)`` for kinds), stopping after ``limit`` matches."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from events import EventFilter
from storage.common import search_terms
from storage.records import micros

CONVERSATION_KEY = "(SELECT key FROM conversations WHERE id = $1)"
SEARCH_CONFIG = "simple"
"""Tokens as they are (lowercased): no stemming, no stop words — like the SQLite index."""


class _Params:
    """Positional parameters ($1, $2, ...) collected as a query is built."""

    def __init__(self, *initial: Any) -> None:
        self.values: list[Any] = list(initial)

    def add(self, value: Any) -> str:
        self.values.append(value)
        return f"${len(self.values)}"


def _where(params: _Params, start_id: int, end_id: int | None, filter: EventFilter | None) -> str:
    clauses = [f"conv = {CONVERSATION_KEY}"]
    if start_id > 0:
        clauses.append(f"id >= {params.add(start_id)}")
    if end_id is not None:
        clauses.append(f"id <= {params.add(end_id)}")
    if filter is not None:
        if included := sorted(filter.included_kinds):
            clauses.append(f"kind = ANY({params.add(included)}::text[])")
        if excluded := sorted(filter.excluded_kinds):
            clauses.append(f"NOT kind = ANY({params.add(excluded)}::text[])")
        if filter.source is not None:
            clauses.append(f"source = {params.add(filter.source)}")
        if filter.start_date is not None:
            clauses.append(f"ts_us >= {params.add(micros(filter.start_date))}")
        if filter.end_date is not None:
            clauses.append(f"ts_us <= {params.add(micros(filter.end_date))}")
        if filter.exclude_hidden:
            clauses.append("NOT hidden")
        if filter.folded_query:
            clauses.append(f"strpos(text, {params.add(filter.folded_query)}) > 0")
    return " AND ".join(clauses)


def page_query(
    conversation_id: str,
    start_id: int,
    end_id: int | None,
    reverse: bool,
    filter: EventFilter | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """``SELECT id, data`` of up to ``limit`` rows (callers ask one more to see if more)."""
    params = _Params(conversation_id)
    where = _where(params, start_id, end_id, filter)
    order = "DESC" if reverse else "ASC"
    return (
        f"SELECT id, data FROM events WHERE {where} ORDER BY id {order} LIMIT {params.add(limit)}",
        params.values,
    )


def count_query(
    conversation_id: str, start_id: int, end_id: int | None, filter: EventFilter | None
) -> tuple[str, list[Any]]:
    params = _Params(conversation_id)
    return f"SELECT count(*) FROM events WHERE {_where(params, start_id, end_id, filter)}", (
        params.values
    )


CATCH_UP = (
    f"WITH sizes AS (SELECT id, octet_length(data) AS size FROM events "
    f"WHERE conv = {CONVERSATION_KEY} AND id > $2 ORDER BY id LIMIT $3), "
    "running AS (SELECT id, sum(size) OVER (ORDER BY id) AS total, "
    "row_number() OVER (ORDER BY id) AS n, count(*) OVER () AS scanned FROM sizes) "
    "SELECT e.id, e.data, r.scanned FROM running AS r JOIN events AS e "
    f"ON e.conv = {CONVERSATION_KEY} AND e.id = r.id "
    "WHERE r.n = 1 OR r.total <= $4 ORDER BY e.id"
)
"""``(id, data, scanned)`` after ``$2``: at most ``$3`` events and ``$4`` bytes (the first
whatever its size); sizes are read without loading the data."""


def tsquery(query: str) -> str:
    """A user's query (`storage.common.search_terms`) in ``to_tsquery`` syntax: every
    term must match; a phrase's words follow each other; ``word*`` is a prefix. Terms
    are ``\\w+`` words, so quoting them is enough to keep operators out."""
    parts = []
    for term in search_terms(query):
        lexemes = [f"'{word}'" for word in term.words]
        if term.prefix:
            lexemes[-1] += ":*"
        parts.append("(" + " <-> ".join(lexemes) + ")" if len(lexemes) > 1 else lexemes[0])
    return " & ".join(parts)


def search_all_query(
    match: str,
    conversation_ids: Sequence[str] | None,
    owner: str | None,
    before_seq: int | None,
    limit: int,
) -> tuple[str, list[Any]]:
    """Newest-first hits ``(seq, conversation id, event id, data, title)``."""
    params = _Params(match)
    clauses = [f"d.doc @@ to_tsquery('{SEARCH_CONFIG}', $1)"]
    if before_seq is not None:
        clauses.append(f"d.seq < {params.add(before_seq)}")
    if conversation_ids is not None:
        clauses.append(f"c.id = ANY({params.add(list(conversation_ids))}::text[])")
    if owner is not None:
        clauses.append(f"c.owner = {params.add(owner)}")
    return (
        "SELECT d.seq, c.id, e.id, e.data, c.title FROM event_docs AS d "
        "JOIN events AS e ON e.seq = d.seq JOIN conversations AS c ON c.key = d.conv "
        f"WHERE {' AND '.join(clauses)} ORDER BY d.seq DESC LIMIT {params.add(limit)}",
        params.values,
    )
