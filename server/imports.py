"""Reading a recording sent to the server: a JSON trajectory or JSON Lines, bounded in
bytes (while it streams in) and in depth (see `events.trajectory`), into events for a new
conversation. Nothing here writes: the caller creates the conversation with its events
in one storage transaction."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

import orjson
from starlette.requests import Request

from events import EventBase, EventValidationError, recorded_events, trajectory_items
from server.errors import BadRequest, PayloadTooLarge

LINE_TYPES = frozenset(
    {"application/x-ndjson", "application/jsonl", "application/json-lines", "application/x-jsonl"}
)
"""Media types that mean JSON Lines: one event per line."""


def wants_lines(request: Request, default: bool = False) -> bool:
    """JSON Lines when ``?format=jsonl``, or when the body (``Content-Type``) or the
    answer (``Accept``) is named as one. Raises `BadRequest` for another format."""
    chosen = request.query_params.get("format", "")
    if chosen in ("jsonl", "ndjson"):
        return True
    if chosen == "json":
        return False
    if chosen:
        raise BadRequest(f"format must be json or jsonl, got {chosen!r}", field="format")
    for header in ("content-type", "accept"):
        values = request.headers.get(header, "").split(",")
        if {value.split(";")[0].strip().lower() for value in values} & LINE_TYPES:
            return True
    return default


async def read_body(request: Request, limit: int) -> bytes:
    """The request body, refused with 413 as soon as it passes ``limit`` bytes."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"a recording may be at most {limit} bytes", field="trajectory")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"a recording may be at most {limit} bytes", field="trajectory")
        chunks.append(chunk)
    return b"".join(chunks)


def recording_documents(body: bytes | str, *, lines: bool, name: str) -> list[Any]:
    """The event documents of a recording: a JSON array, ``{"trajectory": [...]}``, one
    event object, or JSON Lines (also recognised when ``lines`` was not said). Raises
    `BadRequest` naming ``name`` (and the event's index)."""
    raw = body.encode() if isinstance(body, str) else body
    if not raw.strip():
        raise BadRequest("the recording is empty", field=name, code="invalid_json")
    if not lines:
        try:
            document = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            if not _looks_like_lines(raw):
                raise BadRequest(
                    f"{name} is not valid JSON: {exc}", field=name, code="invalid_json"
                ) from None
        else:
            try:
                return trajectory_items(document, name)
            except EventValidationError as exc:
                raise BadRequest(exc.problem, field=exc.field, code="invalid_event") from None
    return _lines(raw, name)


def recording_events(documents: list[Any], *, name: str) -> Iterator[EventBase]:
    """`recorded_events`, with its errors as 400s naming the event and the field; each
    document is released from ``documents`` once read."""
    try:
        yield from recorded_events(documents, name=name, release=True)
    except EventValidationError as exc:
        raise BadRequest(exc.problem, field=exc.field, code="invalid_event") from None


def title_of(documents: Sequence[Any]) -> str:
    """The first line of the recording's first user message, as create does."""
    for document in documents:
        if (
            isinstance(document, dict)
            and document.get("action") == "message"
            and document.get("source") == "user"
            and isinstance(args := document.get("args"), dict)
            and isinstance(content := args.get("content"), str)
            and content.strip()
        ):
            first = content.strip().splitlines()[0]
            return first[:60] + "…" if len(first) > 60 else first
    return "Imported recording"


def _looks_like_lines(raw: bytes) -> bool:
    first, _, rest = raw.strip().partition(b"\n")
    if not rest.strip():
        return False
    try:
        return isinstance(orjson.loads(first), dict)
    except orjson.JSONDecodeError:
        return False


def _lines(raw: bytes, name: str) -> list[Any]:
    documents: list[Any] = []
    for number, line in enumerate(raw.split(b"\n"), start=1):
        if not line.strip():
            continue
        try:
            documents.append(orjson.loads(line))
        except orjson.JSONDecodeError as exc:
            raise BadRequest(
                f"line {number} is not valid JSON: {exc}",
                field=f"{name}[{len(documents)}]",
                code="invalid_json",
            ) from None
    return documents
