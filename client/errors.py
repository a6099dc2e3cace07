"""What the client raises.

ThreadlineError                       (events.errors: every threadline error)
└── ClientError
    ├── ServerUnreachable             no answer: connection refused, timed out, dropped
    └── ApiError(status, error, message, field)   the server's 4xx / 5xx, as it said it
        ├── BadRequest            400
        ├── Unauthorized          401
        ├── Forbidden             403
        ├── NotFound              404
        ├── Conflict              409
        ├── PayloadTooLarge       413
        ├── TooManyRequests       429   (retry_after, seconds, when the server gave one)
        ├── ServiceUnavailable    503   (retry_after)
        ├── InsufficientStorage   507   (retry_after)
        └── ServerError           any other 5xx
"""

from __future__ import annotations

from typing import Any

from events import ThreadlineError


class ClientError(ThreadlineError):
    """Every error of the client library."""


class ServerUnreachable(ClientError):
    """The server did not answer (nothing listens there, or the connection broke)."""


class ApiError(ClientError):
    """The server refused: ``status`` (HTTP, or the WebSocket close code less 4000), and
    its body's ``error`` code, ``message`` and ``field`` (the input it names, if any)."""

    status = 0

    def __init__(
        self,
        status: int,
        error: str,
        message: str,
        field: str | None = None,
        *,
        retry_after: float | None = None,
        body: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        self.field = field
        self.retry_after = retry_after
        self.body = body or {}

    def __str__(self) -> str:
        where = f" ({self.field})" if self.field else ""
        return f"{self.status} {self.error}: {self.message}{where}"


class BadRequest(ApiError):
    pass


class Unauthorized(ApiError):
    pass


class Forbidden(ApiError):
    pass


class NotFound(ApiError):
    pass


class Conflict(ApiError):
    pass


class PayloadTooLarge(ApiError):
    pass


class TooManyRequests(ApiError):
    pass


class ServiceUnavailable(ApiError):
    pass


class InsufficientStorage(ApiError):
    pass


class ServerError(ApiError):
    pass


_BY_STATUS: dict[int, type[ApiError]] = {
    400: BadRequest,
    401: Unauthorized,
    403: Forbidden,
    404: NotFound,
    409: Conflict,
    413: PayloadTooLarge,
    429: TooManyRequests,
    503: ServiceUnavailable,
    507: InsufficientStorage,
}


def api_error(
    status: int, body: Any, *, reason: str = "", retry_after: str | None = None
) -> ApiError:
    """The typed error for an answer of ``status`` with the JSON ``body`` (or anything
    else, when the server said something that is not its error shape)."""
    if not isinstance(body, dict):
        body = {}
    kind = _BY_STATUS.get(status) or (ServerError if status >= 500 else BadRequest)
    seconds: float | None = None
    if retry_after is not None:
        try:
            seconds = float(retry_after)
        except ValueError:
            seconds = None
    return kind(
        status,
        str(body.get("error") or "http_error"),
        str(body.get("message") or reason or f"HTTP {status}"),
        body.get("field") if isinstance(body.get("field"), str) else None,
        retry_after=seconds,
        body=body,
    )
