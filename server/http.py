"""Helpers the REST handlers share: who is calling, reading bodies and query parameters.

Bodies are bounded in bytes before they get here (`server.bodies.BodyLimit`); here they
are bounded in nesting (`events.depth.MAX_JSON_DEPTH`), and every integer a client sends
in a query is bounded to ``0..MAX_CLIENT_INT`` unless the parameter is narrower.
"""

from __future__ import annotations

from typing import NamedTuple, TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from events.depth import MAX_JSON_DEPTH, depth_field, too_deep
from server.auth import Authenticator, User, key_from_headers, scoped_id, visible_conversation
from server.errors import BadRequest
from server.logs import CONVERSATION
from server.service import ConversationService
from storage import ConversationRecord

Model = TypeVar("Model", bound=BaseModel)
MAX_CLIENT_INT = 2**53 - 1
"""The largest integer a client may send: exact in a JavaScript number and a double, and
far inside SQLite's 64-bit integers."""


async def caller(request: Request) -> User:
    authenticator: Authenticator = request.app.state.authenticator
    return await authenticator.user_for(key_from_headers(request.headers))


class Target(NamedTuple):
    """A request about one conversation: who asks, and the conversation, if they may see it."""

    service: ConversationService
    user: User
    conversation: ConversationRecord


async def target(request: Request) -> Target:
    """Raises `Unauthorized`, or `NotFound` for a conversation missing or not theirs."""
    user = await caller(request)
    service: ConversationService = request.app.state.service
    conversation_id = request.path_params["conversation_id"]
    record = await visible_conversation(service.storage, user, conversation_id)
    CONVERSATION.set(record.id)
    return Target(service, user, record)


async def writable_target(request: Request) -> tuple[ConversationService, User, str]:
    """A request writing to one conversation: who asks, and the store's id of the
    conversation, which they may see if it exists (`server.known`; the write raises
    `ConversationNotFound` if it does not). Raises `Unauthorized`, or `NotFound` for a
    conversation missing or not theirs when its record had to be read."""
    user = await caller(request)
    service: ConversationService = request.app.state.service
    conversation_id = request.path_params["conversation_id"]
    store_id = scoped_id(user, conversation_id)
    if not service.known.vouches(user, store_id):
        service.known.remember(await visible_conversation(service.storage, user, conversation_id))
    CONVERSATION.set(store_id)
    return service, user, store_id


async def read_json(request: Request) -> object:
    """The body as JSON, nested at most `MAX_JSON_DEPTH` levels. (Its size was bounded
    while it streamed in.)"""
    body = await request.body()
    if not body:
        raise BadRequest("the request needs a JSON body", code="invalid_json")
    try:
        document = orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise BadRequest(f"the body is not valid JSON: {exc}", code="invalid_json") from None
    if (path := too_deep(document)) is not None:
        field = depth_field(path) or None
        raise BadRequest(
            f"{field or 'the body'}: nested deeper than {MAX_JSON_DEPTH} levels",
            field=field,
            code="invalid_json",
        )
    return document


async def read_model(request: Request, model: type[Model]) -> Model:
    document = await read_json(request)
    if not isinstance(document, dict):
        raise BadRequest("the body must be a JSON object", code="invalid_request")
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise validation_error(exc) from None


def validation_error(exc: ValidationError) -> BadRequest:
    first = exc.errors(include_url=False)[0]
    field = ".".join(str(part) for part in first["loc"]) or None
    problem = first["msg"].removeprefix("Value error, ")
    if first["type"] == "extra_forbidden":
        problem = "unknown field"
    elif first["type"] == "missing":
        problem = "field required"
    return BadRequest(
        f"{field}: {problem}" if field else problem, field=field, code="invalid_request"
    )


def int_param(
    request: Request, name: str, default: int | None, *, low: int, high: int = MAX_CLIENT_INT
) -> int | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(f"{name} must be an integer, got {raw!r}", field=name) from None
    if not low <= value <= high:
        raise BadRequest(f"{name} must be between {low} and {high}, got {value}", field=name)
    return value


def bool_param(request: Request, name: str, default: bool = False) -> bool:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return default
    lowered = raw.lower()
    if lowered in ("true", "1", "yes"):
        return True
    if lowered in ("false", "0", "no"):
        return False
    raise BadRequest(f"{name} must be true or false, got {raw!r}", field=name)


def list_param(request: Request, name: str) -> list[str]:
    """Repeated (``?t=a&t=b``) or comma-separated (``?t=a,b``)."""
    values: list[str] = []
    for raw in request.query_params.getlist(name):
        values.extend(part.strip() for part in raw.split(",") if part.strip())
    return values
