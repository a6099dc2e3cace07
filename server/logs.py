"""Logging setup: text or JSON lines, conversation ids on records, keys never logged.

``THREADLINE_LOG_FORMAT=json`` writes one JSON object per line (``time``, ``level``,
``logger``, ``message``, ``conversation_id`` when the record was made on behalf of one,
``exception``). The id comes from `CONVERSATION`, set where work for a conversation
starts: a REST call on it, a stream of it, its run's task (and tasks those start).

Browsers cannot put headers on a WebSocket or an EventSource, so streams take the API
key as ``session_api_key`` in the query string, and uvicorn's access log prints query
strings. `RedactKeys` masks them.
"""

from __future__ import annotations

import logging
import re
from contextvars import ContextVar
from datetime import UTC, datetime

import orjson

CONVERSATION: ContextVar[str | None] = ContextVar("threadline_conversation", default=None)
"""The conversation (store id) the current task works for, if any."""

_KEY_IN_QUERY = re.compile(r"(session_api_key=)[^&\s\"']+")


class RedactKeys(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if isinstance(record.args, tuple):
            record.args = tuple(
                _KEY_IN_QUERY.sub(r"\1***", arg) if isinstance(arg, str) else arg
                for arg in record.args
            )
        if isinstance(record.msg, str):
            record.msg = _KEY_IN_QUERY.sub(r"\1***", record.msg)
        return True


class AddConversation(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "conversation_id", None) is None:
            record.conversation_id = CONVERSATION.get()
        return True


class JsonLines(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        conversation_id = getattr(record, "conversation_id", None)
        if conversation_id is not None:
            entry["conversation_id"] = conversation_id
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure(level: str, form: str = "text") -> None:
    """The root logger: one handler on stderr, text or JSON lines."""
    handler = logging.StreamHandler()
    handler.addFilter(AddConversation())
    handler.addFilter(RedactKeys())
    if form == "json":
        handler.setFormatter(JsonLines())
    else:
        handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)


def redact_uvicorn() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactKeys())
