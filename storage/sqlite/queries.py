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
from storage.sqlite.schema import conv_trigram

CONVERSATION_KEY = "(SELECT key FROM conversations WHERE id = ?)"


def _where(
    conversation_id: str,
    start_id: int,
    end_id: int | None,
    filter: EventFilter | None,
    t: str = "",
    unindexed: bool = False,
) -> tuple[str, list[Any]]:
    """The page's WHERE clause over ``events``, columns prefixed with ``t``;
    ``unindexed`` keeps SQLite from answering the conversation term from an index."""
    clauses = [f"{'+' if unindexed else ''}{t}conv = {CONVERSATION_KEY}"]
    params: list[Any] = [conversation_id]
    if start_id > 0:
        clauses.append(f"{t}id >= ?")
        params.append(start_id)
    if end_id is not None:
        clauses.append(f"{t}id <= ?")
        params.append(end_id)
    if filter is not None:
        included = sorted(filter.included_kinds)
        if included:
            clauses.append(f"{t}kind IN ({', '.join('?' * len(included))})")
            params.extend(included)
        excluded = sorted(filter.excluded_kinds)
        if excluded:
            clauses.append(f"{t}kind NOT IN ({', '.join('?' * len(excluded))})")
            params.extend(excluded)
        if filter.source is not None:
            clauses.append(f"{t}source = ?")
            params.append(filter.source)
        if filter.start_date is not None:
            clauses.append(f"{t}ts_us >= ?")
            params.append(micros(filter.start_date))
        if filter.end_date is not None:
            clauses.append(f"{t}ts_us <= ?")
            params.append(micros(filter.end_date))
        if filter.exclude_hidden:
            clauses.append(f"{t}hidden = 0")
        if filter.folded_query:
            clauses.append(f"instr({t}text, ?) > 0")
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


SUBSTRING_TRIGRAMS = 3
"""At most this many of a text query's trigrams go into the index query: each one more
costs a walk of its entries and narrows little (measured on bench/storage.py's data)."""


def substring_page_query(
    conversation_id: str,
    start_id: int,
    end_id: int | None,
    reverse: bool,
    filter: EventFilter,
    limit: int,
    indexed_through: int,
) -> tuple[str, list[Any]]:
    """`page_query` for a text filter of 3 characters or more, from the trigram index.

    Events indexed so far (``seq <= indexed_through``) come from the index: the entries
    holding the conversation's trigram and a few of the query's (`_trigram_match`), each
    checked with the same ``instr`` as the scan, so the result is exactly the scan's.
    The rest (the index trails the log by a batch) are scanned by ``seq``.
    Within a conversation id order is ``seq`` order, so the two parts never interleave.
    """
    order = "DESC" if reverse else "ASC"
    bounds = ["t.rowid <= ?"]
    bound_params: list[Any] = [indexed_through]
    if start_id > 0:
        bounds.append(
            f"t.rowid >= (SELECT seq FROM events WHERE conv = {CONVERSATION_KEY} "
            "AND id >= ? ORDER BY id LIMIT 1)"
        )
        bound_params += [conversation_id, start_id]
    if end_id is not None:
        bounds.append(
            f"t.rowid <= (SELECT seq FROM events WHERE conv = {CONVERSATION_KEY} "
            "AND id <= ? ORDER BY id DESC LIMIT 1)"
        )
        bound_params += [conversation_id, end_id]
    indexed_where, indexed_params = _where(conversation_id, start_id, end_id, filter, "e.", True)
    tail_where, tail_params = _where(conversation_id, start_id, end_id, filter, "e.", True)
    match = (
        f"(SELECT '\"' || {conv_trigram('key')} || '\" AND ' || ? FROM conversations WHERE id = ?)"
    )
    sql = (
        "SELECT id, data FROM (SELECT e.id AS id, e.data AS data "
        "FROM search.events_substrings AS t CROSS JOIN events AS e ON e.seq = t.rowid "
        f"WHERE t.events_substrings MATCH {match} AND {' AND '.join(bounds)} "
        f"AND {indexed_where} ORDER BY t.rowid {order} LIMIT ?) "
        "UNION ALL "
        "SELECT id, data FROM (SELECT e.id AS id, e.data AS data FROM events AS e "
        f"WHERE e.seq > ? AND {tail_where} ORDER BY e.seq {order} LIMIT ?) "
        f"ORDER BY id {order} LIMIT ?"
    )
    params = [
        _trigram_match(filter.folded_query or ""), conversation_id, *bound_params,
        *indexed_params, limit, indexed_through, *tail_params, limit, limit,
    ]  # fmt: skip
    return sql, params


def _trigram_match(text: str) -> str:
    """Trigrams of ``text`` side by side (and its last), at most `SUBSTRING_TRIGRAMS`
    spread over it, ANDed, each quoted: every event holding ``text`` holds them."""
    starts = [*range(0, len(text) - 2, 3), len(text) - 3]
    trigrams = list(dict.fromkeys(text[start : start + 3] for start in starts))
    if len(trigrams) > SUBSTRING_TRIGRAMS:
        step = (len(trigrams) - 1) / (SUBSTRING_TRIGRAMS - 1)
        trigrams = [trigrams[round(i * step)] for i in range(SUBSTRING_TRIGRAMS)]
    return " AND ".join('"' + trigram.replace('"', '""') + '"' for trigram in trigrams)


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


NARROW_MAX = 64
"""Up to this many conversations, a search names them in the index query."""


def fts_match_expression(query: str, conversation_keys: Sequence[int] = ()) -> str:
    """A user's query (`storage.common.search_terms`) as an FTS5 expression over the
    text column, narrowed to ``conversation_keys`` (the ``conv`` column) if any."""
    expressions = []
    for term in search_terms(query):
        quoted = '"' + " ".join(term.words) + '"'
        expressions.append(quoted + "*" if term.prefix else quoted)
    text = "{text} : (" + " AND ".join(expressions) + ")"
    if not conversation_keys:
        return text
    conversations = " OR ".join(f'"c{key}"' for key in conversation_keys)
    return "{conv} : (" + conversations + ") AND " + text


def conversation_keys_query(conversation_ids: Sequence[str]) -> tuple[str, list[Any]]:
    return (
        "SELECT key FROM conversations WHERE id IN (SELECT value FROM json_each(?))",
        [_json_list(conversation_ids)],
    )


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
