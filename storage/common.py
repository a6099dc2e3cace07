"""What every backend shares beyond the protocols: argument checks, cursors, the
preparation of a batch of events, and how a user's search query splits into terms."""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import orjson

from events import EventBase, EventFilter
from storage.errors import InvalidCursor, InvalidSearchQuery
from storage.models import ConversationPatch, ConversationRecord
from storage.protocols import MAX_PAGE
from storage.records import PreparedEvent, cost_micros, from_cost_micros, from_micros, prepare

MAX_INT64 = 2**63 - 1

COLUMNS = (
    "id, owner, title, status, agent_state, created_us, updated_us, repository, "
    "selected_branch, git_provider, trigger, cost_micros, prompt_tokens, "
    "completion_tokens, iterations, max_iterations, max_budget_micros, priority, settings"
)
"""The conversation record's columns, in `to_record`'s order (the same on every backend)."""


def to_record(row: Sequence[Any]) -> ConversationRecord:
    """A conversation record from a row of `COLUMNS` (any backend's row type)."""
    (
        conversation_id, owner, title, status, agent_state, created_us, updated_us,
        repository, selected_branch, git_provider, trigger, cost, prompt_tokens,
        completion_tokens, iterations, max_iterations, max_budget, priority, settings,
    ) = row  # fmt: skip
    return ConversationRecord(
        id=conversation_id,
        owner=owner,
        title=title,
        status=status,
        agent_state=agent_state,
        created_at=from_micros(created_us),
        updated_at=from_micros(updated_us),
        repository=repository,
        selected_branch=selected_branch,
        git_provider=git_provider,
        trigger=trigger,
        accumulated_cost=from_cost_micros(cost),
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        iterations=iterations,
        max_iterations=max_iterations,
        max_budget=None if max_budget is None else from_cost_micros(max_budget),
        priority=priority,
        settings=orjson.loads(settings),
    )


def check_range(start_id: int, end_id: int | None, limit: int) -> None:
    if start_id < 0:
        raise ValueError("start_id must be 0 or more")
    if end_id is not None and end_id < 0:
        raise ValueError("end_id must be 0 or more")
    if not 1 <= limit <= MAX_PAGE:
        raise ValueError(f"limit must be between 1 and {MAX_PAGE}")


def types_only(filter: EventFilter) -> bool:
    """True when the filter says nothing but which kinds to include or exclude."""
    return filter.model_copy(update={"include_types": (), "exclude_types": ()}).is_empty()


def stored_changes(patch: ConversationPatch) -> dict[str, Any]:
    """The columns a patch writes, as every backend stores them: costs in integer
    micro-units, settings as JSON."""
    changes = patch.changes()
    for name, column in (("accumulated_cost", "cost_micros"), ("max_budget", "max_budget_micros")):
        if name in changes:
            value = changes.pop(name)
            changes[column] = None if value is None else cost_micros(value)
    if "settings" in changes:
        changes["settings"] = orjson.dumps(changes["settings"])
    return changes


def encode_cursor(created_us: int, key: int) -> str:
    """A conversation list cursor: the last row's creation time and key."""
    return base64.urlsafe_b64encode(f"{created_us}:{key}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, int]:
    """Raises `InvalidCursor` for anything `encode_cursor` could not have made."""
    try:
        padded = cursor + "=" * (-len(cursor) % 4)
        created_us, key = base64.urlsafe_b64decode(padded).decode().split(":")
        values = int(created_us), int(key)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise InvalidCursor(cursor) from None
    if not all(-MAX_INT64 <= value <= MAX_INT64 for value in values):
        raise InvalidCursor(cursor)
    return values


def decode_seq(cursor: str) -> int:
    """A search cursor: the global sequence number of the last hit."""
    try:
        value = int(cursor)
    except ValueError:
        raise InvalidCursor(cursor) from None
    if not 1 <= value <= MAX_INT64:
        raise InvalidCursor(cursor)
    return value


INLINE_PREPARE_MAX = 16
"""A list of at most this many events is prepared on the event loop: for a creation's
first message a worker thread's hop costs more than the serialization (measured in
`bench/sessions.py` (c): ``ThreadPoolExecutor.submit`` was ~5% of the server's samples)."""


async def prepare_all_off_loop(events: Iterable[EventBase]) -> list[PreparedEvent]:
    """`prepare_all`, in a worker thread unless ``events`` is a short list: a large
    recording's validation and serialization (the caller's iterator runs there too)
    would otherwise hold the event loop for seconds."""
    if isinstance(events, list | tuple) and len(events) <= INLINE_PREPARE_MAX:
        return prepare_all(events)
    return await asyncio.to_thread(prepare_all, events)


def prepare_all(events: Iterable[EventBase]) -> list[PreparedEvent]:
    """Prepared events for a batch held whole until its transaction (an import)."""
    # orjson's output keeps about 4 KiB of spare capacity, harmless for an append batch
    # that is written at once but not for an import held whole until its transaction:
    # each body is copied to its exact size (measured: 500 -> 60 MB for 128k events).
    prepared = []
    for event in events:
        event_prepared = prepare(event)
        prepared.append(replace(event_prepared, body=bytes(memoryview(event_prepared.body))))
    return prepared


@dataclass(frozen=True, slots=True)
class SearchTerm:
    words: tuple[str, ...]
    """One word, or the words of a quoted phrase, in order."""
    prefix: bool = False
    """A trailing ``*``: the (single) word is a prefix."""


_PHRASE_OR_WORD = re.compile(r'"([^"]*)"|(\w+\*?)')


def search_terms(query: str) -> list[SearchTerm]:
    """A user's full-text query: every word (or ``"quoted phrase"``) must occur; a trailing
    ``*`` makes a word a prefix. Nothing else is an operator. Raises
    `InvalidSearchQuery` when there is nothing to search for."""
    terms: list[SearchTerm] = []
    for phrase, word in _PHRASE_OR_WORD.findall(query):
        if word:
            prefix = word.endswith("*")
            terms.append(SearchTerm((word.removesuffix("*"),), prefix))
            continue
        words = tuple(re.findall(r"\w+", phrase))
        if words:
            terms.append(SearchTerm(words))
    if not terms:
        raise InvalidSearchQuery(f"the query {query!r} has no words to search for")
    return terms
