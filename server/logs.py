"""Logging setup: keys never reach the log.

Browsers cannot put headers on a WebSocket or an EventSource, so streams take the API
key as ``session_api_key`` in the query string, and uvicorn's access log prints query
strings. `RedactKeys` masks them.
"""

from __future__ import annotations

import logging
import re

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


def configure(level: str) -> None:
    logging.basicConfig(level=level.upper(), format="%(levelname)s %(name)s: %(message)s")


def redact_uvicorn() -> None:
    for name in ("uvicorn.access", "uvicorn.error"):
        logging.getLogger(name).addFilter(RedactKeys())
