"""HTTP errors: every client mistake is a 4xx with ``{"error": code, "message": ...}``.

ThreadlineError
└── ApiError(status, code, message)   raised by handlers; rendered as JSON
    ├── NotFound          404
    ├── Conflict          409
    ├── BadRequest        400
    ├── Unauthorized      401
    └── TooManyRequests   429
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from events import EventValidationError, ThreadlineError
from storage import (
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    InvalidSearchQuery,
)

logger = logging.getLogger(__name__)


class ApiError(ThreadlineError):
    status = 400
    code = "bad_request"

    def __init__(
        self, message: str, *, field: str | None = None, code: str | None = None, **details: Any
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        if code is not None:
            self.code = code

    def body(self) -> dict[str, Any]:
        body: dict[str, Any] = {"error": self.code, "message": self.message}
        if self.field is not None:
            body["field"] = self.field
        body.update(self.details)
        return body


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    status = 401
    code = "unauthorized"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"


def as_api_error(exc: Exception) -> ApiError | None:
    """The API error a domain exception means, or None for a server fault."""
    match exc:
        case ApiError():
            return exc
        case ConversationNotFound():
            return NotFound(f"conversation {exc.conversation_id!r} not found")
        case ConversationExists():
            return Conflict(f"conversation {exc.conversation_id!r} already exists")
        case EventValidationError():
            return BadRequest(exc.problem, field=exc.field or None, code="invalid_event")
        case InvalidCursor() | InvalidSearchQuery():
            return BadRequest(str(exc))
    return None


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def handle_error(request: Request, exc: Exception) -> Response:
    """Domain errors: the client's mistake when `as_api_error` knows it, else ours."""
    error = as_api_error(exc)
    if error is None:
        return await handle_internal_error(request, exc)
    return json_response(error.body(), error.status)


async def handle_internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"error": "internal", "message": "internal server error"}, 500)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_response({"error": code, "message": exc.detail}, exc.status_code, exc.headers)
