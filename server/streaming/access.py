"""What every stream checks before it starts: who is asking, for which conversation,
and from which event on."""

from __future__ import annotations

from dataclasses import dataclass

from server.auth import Authenticator, User, visible_conversation
from server.errors import BadRequest
from storage import Storage


@dataclass(frozen=True, slots=True)
class StreamRequest:
    user: User
    conversation_id: str
    after_id: int


def parse_latest_event_id(raw: str | None) -> int:
    if raw is None or raw == "":
        return -1
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"latest_event_id must be an integer, got {raw!r}", field="latest_event_id"
        ) from None
    if value < -1:
        raise BadRequest("latest_event_id must be -1 or more", field="latest_event_id")
    return value


async def open_stream(
    storage: Storage,
    authenticator: Authenticator,
    *,
    conversation_id: str | None,
    key: str | None,
    latest_event_id: str | None,
) -> StreamRequest:
    """Raises `ApiError` (401, 404, 400) with the reason to give the client."""
    if not conversation_id:
        raise BadRequest("conversation_id is required", field="conversation_id")
    user = await authenticator.user_for(key)
    record = await visible_conversation(storage, user, conversation_id)
    return StreamRequest(user, record.id, parse_latest_event_id(latest_event_id))
