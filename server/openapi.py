"""The OpenAPI document (``/openapi.json``) and a docs page rendered from it (``/docs``).

Request bodies come from the pydantic models the handlers validate with, so the schema
cannot drift from what the server accepts.
"""

from __future__ import annotations

import html
from typing import Any

from events import EventFilter
from server.openapi_tasks import paths as task_paths
from server.schemas import CreateConversation, SendMessage, UpdateConversation

ERROR = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "a stable code, e.g. not_found"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending field, when there is one"},
    },
}
EVENT = {"type": "object", "description": "an event in the OpenHands V0 wire shape"}
TRAJECTORY_CONTENT = {
    "application/json": {
        "schema": {
            "type": "object",
            "properties": {"trajectory": {"type": "array", "items": EVENT}},
        }
    },
    "application/x-ndjson": {"schema": {"type": "string", "description": "one event a line"}},
}
CONVERSATION_ID = {
    "name": "conversation_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string"},
}


def _query(name: str, schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "schema": schema,
        "description": description,
    }


FILTER_PARAMETERS = [
    _query("query", {"type": "string"}, "case-insensitive substring of message/content/args"),
    _query(
        "include_types",
        {"type": "string"},
        "kinds to keep, comma-separated: run, action:run, CmdRunAction",
    ),
    _query("exclude_types", {"type": "string"}, "kinds to drop"),
    _query("source", {"enum": ["user", "agent", "environment"]}, "who produced the event"),
    _query("start_date", {"type": "string", "format": "date-time"}, "inclusive lower bound"),
    _query("end_date", {"type": "string", "format": "date-time"}, "inclusive upper bound"),
    _query("exclude_hidden", {"type": "boolean"}, "drop events marked hidden"),
]
RANGE_PARAMETERS = [
    _query("start_id", {"type": "integer", "minimum": 0, "default": 0}, "first id (inclusive)"),
    _query("end_id", {"type": "integer", "minimum": 0}, "last id (inclusive)"),
]


def _body(model: type) -> dict[str, Any]:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}")  # type: ignore[attr-defined]
    return {"required": True, "content": {"application/json": {"schema": schema}}}


ERROR_STATUSES = {
    "400": "invalid input: the body names the problem and, when there is one, the field",
    "401": "an API key is required (X-Session-API-Key or Bearer), or it is not valid",
    "404": "no such conversation (another user's answers the same)",
    "403": "refused by the server's settings (e.g. the local runtime while API keys are on)",
    "409": "conflict: see the operation's summary",
    "413": "the request body is larger than its cap (THREADLINE_MAX_BODY_BYTES)",
    "429": "too many requests from this key or address, or (starting a run with the "
    "reject policy) too many running conversations; Retry-After says when to come back",
    "503": "the server is shutting down and admits nothing new, or the queue is full "
    "(THREADLINE_MAX_QUEUED); Retry-After",
    "507": "the server's disk is full; nothing was recorded; Retry-After",
}
EVERY_REQUEST = ("413",)
"""Any request may carry a body over the cap."""
REST = (*EVERY_REQUEST, "401", "429")
"""Every rate-limited, authenticated route."""
WRITE = ("503", "507")
"""Anything that records: refused while shutting down or while the disk is full."""


def _responses(
    description: str, errors: tuple[str, ...], schema: dict[str, Any] | None = None, ok: str = "200"
) -> dict[str, Any]:
    content = {"application/json": {"schema": schema or {"type": "object"}}}
    responses: dict[str, Any] = {ok: {"description": description, "content": content}}
    for status in sorted(set(errors)):
        responses[status] = {
            "description": ERROR_STATUSES[status],
            "content": {"application/json": {"schema": ERROR}},
        }
    return responses


def _ok(description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    """A conversation's read: bad parameters, keys, rate, a missing conversation."""
    return _responses(description, (*REST, "400", "404"), schema)


def _control(description: str, *extra: str) -> dict[str, Any]:
    """A change to a conversation."""
    return _responses(description, (*REST, *WRITE, "400", "404", *extra))


def _operation(summary: str, responses: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"summary": summary, "responses": responses, **extra}


REPLAY_PARAMETERS = [
    _query("replay", {"enum": ["0", "1"]}, "1: a paced replay of the logged events"),
    _query("from_id", {"type": "integer", "minimum": 0}, "replay: the first event"),
    _query("from_time", {"type": "string", "format": "date-time"}, "replay: start time"),
    _query("speed", {"type": "number", "minimum": 0.01, "maximum": 10000}, "replay: speed"),
    _query("max_gap", {"type": "number", "minimum": 0}, "replay: longest wait, in seconds"),
]


def build_openapi() -> dict[str, Any]:
    conversation_path = {"parameters": [CONVERSATION_ID]}
    paths: dict[str, Any] = {
        "/api/conversations": {
            "post": _operation(
                "Create a conversation; with initial_user_msg its agent starts at once "
                "(409: the conversation_id is taken)",
                _responses("created", (*REST, *WRITE, "400", "409"), ok="201"),
                requestBody=_body(CreateConversation),
            ),
            "get": _operation(
                "List conversations, newest first",
                _responses("a page: results and next_page_id", (*REST, "400")),
                parameters=[
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
                    _query("page_id", {"type": "string"}, "next_page_id of the previous page"),
                ],
            ),
        },
        "/api/conversations/import": {
            "post": _operation(
                "Create a conversation from a recorded trajectory (by default copied, not "
                'run): a JSON array of events, {"trajectory": [...]}, or JSON Lines; kinds '
                "and fields are kept as recorded, ids renumbered from 0 (original_id keeps "
                "the recorded one). replay_mode=execute or recorded: the copy is the "
                "recording of a replay started at once (201 names both)",
                {
                    **_ok("created"),
                    "201": {"description": "created: conversation_id, events"},
                    "409": {"description": "id taken"},
                    "413": {"description": "larger than THREADLINE_IMPORT_MAX_BYTES"},
                },
                parameters=[
                    _query("title", {"type": "string", "maxLength": 200}, "default: first message"),
                    _query("conversation_id", {"type": "string"}, "default: a new id"),
                    _query("format", {"enum": ["json", "jsonl"]}, "default: by Content-Type"),
                    _query(
                        "replay_mode",
                        {"enum": ["view", "execute", "recorded"]},
                        "view (default): a copy; execute: its actions run again in a fresh "
                        "sandbox; recorded: its agent runs again, answered from its "
                        "recorded model replies",
                    ),
                ],
                requestBody={"required": True, "content": TRAJECTORY_CONTENT},
            )
        },
        "/api/conversations/{conversation_id}": {
            **conversation_path,
            "get": _operation(
                "A conversation's metadata", _responses("the conversation", (*REST, "404"))
            ),
            "patch": _operation(
                "Rename a conversation",
                _control("the conversation"),
                requestBody=_body(UpdateConversation),
            ),
            "delete": _operation(
                "Stop and delete a conversation and its events",
                _responses("deleted", (*REST, *WRITE, "404")),
            ),
        },
        "/api/conversations/{conversation_id}/start": {
            **conversation_path,
            "post": _operation(
                "Start the conversation's agent",
                _responses("started, or queued", (*REST, *WRITE, "404")),
            ),
        },
        "/api/conversations/{conversation_id}/stop": {
            **conversation_path,
            "post": _operation(
                "Stop the conversation's agent", _responses("stopped", (*REST, *WRITE, "404"))
            ),
        },
        "/api/conversations/{conversation_id}/pause": {
            **conversation_path,
            "post": _operation(
                "Hold the agent before its next action (409 when not running)",
                _responses("paused", (*REST, *WRITE, "404", "409")),
            ),
        },
        "/api/conversations/{conversation_id}/resume": {
            **conversation_path,
            "post": _operation(
                "Release a pause, raise a tripped limit, or start a run",
                _responses("resumed", (*REST, *WRITE, "404")),
            ),
        },
        "/api/conversations/{conversation_id}/rerun": {
            **conversation_path,
            "post": _operation(
                "A new conversation re-running this one: replay_mode recorded (default: its "
                "agent answered from the recorded model replies, no model server needed) or "
                "execute (its recorded actions run again in a fresh sandbox); optional "
                "body {replay_mode, conversation_id, title, max_iterations}",
                _responses(
                    "created: conversation_id, recording_id",
                    (*REST, *WRITE, "400", "404", "409"),
                    ok="201",
                ),
            ),
        },
        "/api/conversations/{conversation_id}/replay/{replay_id}": {
            "parameters": [
                CONVERSATION_ID,
                {"name": "replay_id", "in": "path", "required": True, "schema": {"type": "string"}},
            ],
            "post": _operation(
                "Control a paced replay watched over SSE (replay=1): "
                '{"command": "pause" | "resume" | "speed" | "seek", "speed", "id", "timestamp"}',
                _responses("the replay's state", (*REST, "400", "404")),
            ),
        },
        "/api/conversations/{conversation_id}/plan": {
            **conversation_path,
            "get": _operation(
                "The current task-tracking plan and the event that applied it",
                _responses("tasks and event_id", (*REST, "404")),
            ),
        },
        "/api/sessions": {
            "get": _operation(
                "Running and queued conversations, and the caps",
                _responses("running, queued, caps", REST),
            )
        },
        "/api/conversations/{conversation_id}/message": {
            **conversation_path,
            "post": _operation(
                "Send the agent a message",
                _control("logged: event_id"),
                requestBody=_body(SendMessage),
            ),
        },
        "/api/conversations/{conversation_id}/events": {
            **conversation_path,
            "get": _operation(
                "A page of events (OpenHands V0): events and has_more. The same path in "
                "WebSocket scope streams events live from latest_event_id.",
                _ok(
                    "a page",
                    {
                        "type": "object",
                        "properties": {
                            "events": {"type": "array", "items": EVENT},
                            "has_more": {"type": "boolean"},
                        },
                    },
                ),
                parameters=[
                    *RANGE_PARAMETERS,
                    _query("reverse", {"type": "boolean"}, "newest first"),
                    _query(
                        "limit",
                        {"type": "integer", "minimum": 1, "maximum": 100, "default": 20},
                        "page size",
                    ),
                    *FILTER_PARAMETERS,
                ],
            ),
            "post": _operation(
                "Send a user action in wire shape",
                _control("logged: event_id"),
                requestBody={"required": True, "content": {"application/json": {"schema": EVENT}}},
            ),
        },
        "/api/conversations/{conversation_id}/trajectory": {
            **conversation_path,
            "get": _operation(
                'The whole conversation, streamed: {"trajectory": [...]} (OpenHands), or one '
                "event per line with format=jsonl or Accept: application/x-ndjson",
                {
                    **_ok("the trajectory"),
                    "200": {"description": "the events", "content": TRAJECTORY_CONTENT},
                },
                parameters=[
                    _query("include_hidden", {"type": "boolean"}, "keep events marked hidden"),
                    _query("format", {"enum": ["json", "jsonl"]}, "default: by Accept"),
                ],
            ),
        },
        "/api/conversations/{conversation_id}/events/count": {
            **conversation_path,
            "get": _operation(
                "How many events match",
                _ok("count"),
                parameters=[*RANGE_PARAMETERS, *FILTER_PARAMETERS],
            ),
        },
        "/api/conversations/{conversation_id}/events/stream": {
            **conversation_path,
            "get": _operation(
                "Server-Sent Events from latest_event_id (or Last-Event-ID)",
                {
                    **_responses("text/event-stream", (*REST, "400", "404")),
                    "200": {"description": "text/event-stream; id: = event id"},
                },
                parameters=[
                    _query("latest_event_id", {"type": "integer", "minimum": -1}, "resume after"),
                    *REPLAY_PARAMETERS,
                    _query(
                        "until",
                        {"enum": ["end"]},
                        "end: the stream ends (event: end) after the event that ends the "
                        "current run (finished, stopped, error or rejected)",
                    ),
                ],
            ),
        },
        "/api/events/search": {
            "get": _operation(
                "Full-text search across the caller's conversations, newest first",
                _responses(
                    "results, next_cursor, pending (events not yet indexed)", (*REST, "400")
                ),
                parameters=[
                    {"name": "q", "in": "query", "required": True, "schema": {"type": "string"}},
                    _query("limit", {"type": "integer", "minimum": 1, "maximum": 100}, "page size"),
                    _query("cursor", {"type": "string"}, "next_cursor of the previous page"),
                    _query(
                        "format",
                        {"enum": ["json", "jsonl"]},
                        "jsonl: every hit from cursor on, one per line, streamed (limit caps "
                        "the lines; also Accept: application/x-ndjson)",
                    ),
                ],
            )
        },
        "/api/health": {
            "get": _operation(
                "Liveness, and whether API keys are required",
                _responses("status and keys_required", EVERY_REQUEST),
            )
        },
        "/alive": {"get": _operation("Liveness", _responses("ok", EVERY_REQUEST))},
        "/healthz": {"get": _operation("Liveness", _responses("ok", EVERY_REQUEST))},
        "/readyz": {
            "get": _operation(
                "Readiness: storage writable, search index caught up, runtime available "
                "(503 names each problem in checks)",
                _responses("status ready, checks", (*EVERY_REQUEST, "503")),
            )
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus text exposition",
                "responses": {
                    "200": {
                        "description": "metrics",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    },
                    **{
                        status: answer
                        for status, answer in _responses("", EVERY_REQUEST).items()
                        if status != "200"
                    },
                },
            }
        },
    }
    paths.update(task_paths(_responses))
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "threadline",
            "version": "0.1.0",
            "description": (
                "Conversations, their ordered event logs, and live streams. Socket.IO "
                "(OpenHands V0: oh_event / oh_user_action) is served on /socket.io. Tasks "
                "(start, background, single), cron schedules and signed webhooks run on "
                "the same conversations."
            ),
        },
        "components": {
            "securitySchemes": {
                "sessionKey": {"type": "apiKey", "in": "header", "name": "X-Session-API-Key"},
                "bearer": {"type": "http", "scheme": "bearer"},
            },
            "schemas": {"EventFilter": EventFilter.model_json_schema()},
        },
        "security": [{"sessionKey": []}, {"bearer": []}, {}],
        "paths": paths,
    }


STYLE = (
    "body{font:15px/1.5 system-ui,sans-serif;margin:2rem;max-width:70rem}"
    "table{border-collapse:collapse;width:100%}"
    "td,th{border-bottom:1px solid #ddd;padding:.4rem;text-align:left;vertical-align:top}"
    "code{background:#f4f4f4}"
)


def render_docs(spec: dict[str, Any]) -> str:
    """A self-contained HTML page listing every operation; no scripts, no CDN."""
    rows: list[str] = []
    for path, item in spec["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            parameters = [*item.get("parameters", []), *operation.get("parameters", [])]
            names = ", ".join(f"<code>{html.escape(p['name'])}</code>" for p in parameters) or "—"
            body = "JSON body" if "requestBody" in operation else ""
            rows.append(
                f"<tr><td><b>{method.upper()}</b></td><td><code>{html.escape(path)}</code></td>"
                f"<td>{html.escape(operation['summary'])}</td><td>{names} {body}</td></tr>"
            )
    return (
        "<!doctype html><html lang='en'><head><meta charset='utf-8'>"
        "<meta name='viewport' content='width=device-width, initial-scale=1'>"
        f"<title>threadline API</title><style>{STYLE}</style></head><body>"
        f"<h1>threadline API</h1><p>{html.escape(spec['info']['description'])}</p>"
        "<p>Machine-readable: <a href='/openapi.json'>/openapi.json</a>. Errors are JSON: "
        '<code>{"error": code, "message": ...}</code>.</p>'
        "<table><thead><tr><th>Method</th><th>Path</th><th>What it does</th>"
        "<th>Parameters</th></tr></thead>"
        f"<tbody>{''.join(rows)}</tbody></table></body></html>"
    )
