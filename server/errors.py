"""HTTP errors: every client mistake is a 4xx with ``{"error": code, "message": ...}``.

ThreadlineError
└── ApiError(status, code, message)   raised by handlers; rendered as JSON
    ├── NotFound          404
    ├── Conflict          409
    ├── BadRequest        400
    ├── Unauthorized      401
    ├── Forbidden         403
    ├── PayloadTooLarge   413
    ├── TooManyRequests   429   (Retry-After when the caller may try again later)
    ├── ServiceUnavailable 503  (Retry-After)
    └── InsufficientStorage 507 (Retry-After)
"""

from __future__ import annotations

import logging
import math
from collections.abc import Mapping
from typing import Any

import orjson
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Send

from events import EventValidationError, ThreadlineError
from storage import (
    ConversationExists,
    ConversationNotFound,
    InvalidCursor,
    InvalidSearchQuery,
    StorageClosed,
    StorageFull,
)

logger = logging.getLogger(__name__)

STORAGE_FULL_RETRY_AFTER = 30.0
"""Seconds a client is asked to wait when the disk is full."""


class ApiError(ThreadlineError):
    status = 400
    code = "bad_request"

    def __init__(
        self,
        message: str,
        *,
        field: str | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        **details: Any,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.field = field
        self.details = details
        self.retry_after = retry_after
        if code is not None:
            self.code = code

    def headers(self) -> dict[str, str]:
        """``Retry-After`` (whole seconds, at least 1) when the caller may try again."""
        if self.retry_after is None:
            return {}
        return {"Retry-After": str(max(1, math.ceil(self.retry_after)))}

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


class Forbidden(ApiError):
    status = 403
    code = "forbidden"


class NotFound(ApiError):
    status = 404
    code = "not_found"


class Conflict(ApiError):
    status = 409
    code = "conflict"


class PayloadTooLarge(ApiError):
    """The rest of the body is never read, so the connection cannot carry another request."""

    status = 413
    code = "too_large"

    def headers(self) -> dict[str, str]:
        return {**super().headers(), "Connection": "close"}


class TooManyRequests(ApiError):
    status = 429
    code = "too_many_requests"


class ServiceUnavailable(ApiError):
    status = 503
    code = "unavailable"


class InsufficientStorage(ApiError):
    status = 507
    code = "insufficient_storage"


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
        case StorageClosed():
            return ServiceUnavailable(
                "the server is shutting down; try again once it is back", retry_after=5
            )
        case StorageFull():
            return InsufficientStorage(
                "the server's disk is full; the request was not recorded",
                retry_after=STORAGE_FULL_RETRY_AFTER,
            )
    return None


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(orjson.dumps(body), status, headers, media_type="application/json")


async def send_error(send: Send, error: ApiError) -> None:
    """Answer with ``error`` from ASGI middleware, outside Starlette's handlers."""
    body = orjson.dumps(error.body())
    headers = [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    headers += [(name.lower().encode(), value.encode()) for name, value in error.headers().items()]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})


async def handle_error(request: Request, exc: Exception) -> Response:
    """Domain errors: the client's mistake when `as_api_error` knows it, else ours."""
    error = as_api_error(exc)
    if error is None:
        return await handle_internal_error(request, exc)
    return json_response(error.body(), error.status, error.headers())


async def handle_internal_error(request: Request, exc: Exception) -> Response:
    logger.error("unhandled error on %s %s", request.method, request.url.path, exc_info=exc)
    return json_response({"error": "internal", "message": "internal server error"}, 500)


async def handle_client_disconnect(request: Request, exc: Exception) -> Response:
    """The client left, or its body was refused mid-stream (413 already sent): nothing
    to log, and this answer goes nowhere."""
    return Response(status_code=400)


async def handle_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
    return json_response({"error": code, "message": exc.detail}, exc.status_code, exc.headers)
