"""`StreamSession`: one connected client of one conversation, whatever the transport.

A session is who watches (the user, and the key they came with), which conversation (its
store id *and* its creation time: a new conversation under a deleted one's id is another
conversation), and the log subscription that feeds it. It owns what every transport
needs and none should redo:

- **authorization**, checked when it opens, again for every message the client posts, and
  whenever `StreamSessions` learns that the key was revoked or the conversation deleted;
  the session then ends and says why;
- **bounds**: the subscription's buffer is bounded in bytes (a client that falls behind
  reads from the log again), and so is every message a client posts;
- **teardown**: `close()` ends the subscription and releases the client's slot, once.

Transports are thin adapters: they iterate the session (``async for event in session``)
and turn its events into frames, hand what the client sends to `post`, and when the
iteration ends they tell the client `ending` in their own terms (a WebSocket close code,
a Socket.IO event, an SSE event).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

import orjson
from pydantic import ValidationError

from events import parse_event
from server.auth import Authenticator, User
from server.errors import (
    ApiError,
    BadRequest,
    NotFound,
    PayloadTooLarge,
    ServiceUnavailable,
    Unauthorized,
)
from server.streaming.pacing import PacedReplay, ReplayControl, ReplayNotice
from storage import ConversationNotFound, StoredEvent, Subscription

if TYPE_CHECKING:
    from server.service import ConversationService


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a session ended, in the API's error terms (``status`` as in HTTP)."""

    status: int
    code: str
    message: str

    def body(self) -> dict[str, str]:
        return {"error": self.code, "message": self.message}

    def error(self) -> ApiError:
        kind = {401: Unauthorized, 404: NotFound}.get(self.status, ServiceUnavailable)
        return kind(self.message, code=self.code)


REVOKED = Ending(401, "unauthorized", "the API key was revoked")
DELETED = Ending(404, "not_found", "the conversation was deleted")
SHUTTING_DOWN = Ending(503, "unavailable", "the server is shutting down; reconnect to resume")
CLIENT_LEFT = Ending(499, "client_closed", "the client went away")
RUN_ENDED = Ending(200, "run_ended", "the run ended (until=end)")
"""Not an error: the client asked for the stream to end with the run (``until=end``)."""

ENDED_STATES = (b"finished", b"stopped", b"error", b"rejected")


def ends_a_run(event: StoredEvent) -> bool:
    """An ``agent_state_changed`` to a state that ends a run (or holds it for the user)."""
    if b'"agent_state_changed"' not in event.data:
        return False
    extras = orjson.loads(event.data).get("extras") or {}
    return str(extras.get("agent_state", "")).encode() in ENDED_STATES


class StreamSession:
    def __init__(
        self,
        *,
        user: User,
        key: str | None,
        conversation_id: str,
        created_at: datetime,
        transport: str,
        subscription: Subscription | PacedReplay,
        authenticator: Authenticator,
        service: ConversationService,
        max_message_bytes: int,
        on_close: Callable[[StreamSession], None],
    ) -> None:
        self.user = user
        self.conversation_id = conversation_id
        """The store's id (see `server.auth.scoped_id`)."""
        self.transport = transport
        self.subscription = subscription
        """The live log subscription, or a paced replay of the log (``replay=1``)."""
        self.ending: Ending | None = None
        self._key = key
        self._created_at = created_at
        self._authenticator = authenticator
        self._service = service
        self._max_message_bytes = max_message_bytes
        self._on_close = on_close
        self.end_after: int | None = None
        """``until=end``: end after the first run-ending state event with at least this
        id (the newest event when the stream opened)."""
        self._run_ended = False

    @property
    def key_id(self) -> int | None:
        return self.user.key_id

    @property
    def closed(self) -> bool:
        return self.ending is not None

    @property
    def replay(self) -> PacedReplay | None:
        return self.subscription if isinstance(self.subscription, PacedReplay) else None

    def __aiter__(self) -> StreamSession:
        return self

    async def __anext__(self) -> StoredEvent | ReplayNotice:
        """The conversation's next event after the client's last one, in order, until
        the session ends (then `ending` says why); a paced replay's news among them.
        Safe to cancel and call again."""
        if self._run_ended:
            self.close(RUN_ENDED)
            raise StopAsyncIteration
        try:
            event = await self.subscription.__anext__()
        except StopAsyncIteration:
            if self.ending is None:
                # The store ended the subscription: the conversation went, or the store.
                self.close(await self._diagnose())
            raise
        if (
            self.end_after is not None
            and isinstance(event, StoredEvent)
            and event.id >= self.end_after
            and ends_a_run(event)
        ):
            self._run_ended = True
        return event

    async def post(self, message: str | bytes | Any) -> StoredEvent:
        """Log an action the client sent and act on it, after checking again that the
        client may. Raises `ApiError` (the session closes when its rights are gone)."""
        if self.ending is not None:
            raise self.ending.error()
        if isinstance(message, str | bytes) and len(message) > self._max_message_bytes:
            raise PayloadTooLarge(
                f"a message may be at most {self._max_message_bytes} bytes", field="message"
            )
        await self._check_rights()
        event = parse_event(message)
        return await self._service.user_event(
            self.conversation_id, event, self.user, via=self.transport
        )

    async def control(self, message: str | bytes | Any) -> dict[str, Any]:
        """Carry out a client's replay control (`ReplayControl`) after checking again
        that the client may; returns the replay's state. Raises `ApiError`."""
        if self.ending is not None:
            raise self.ending.error()
        replay = self.replay
        if replay is None:
            raise BadRequest("this stream is not a replay", field="replay")
        if isinstance(message, str | bytes) and len(message) > self._max_message_bytes:
            raise PayloadTooLarge(
                f"a message may be at most {self._max_message_bytes} bytes", field="message"
            )
        await self._check_rights()
        try:
            document = orjson.loads(message) if isinstance(message, str | bytes) else message
            control = ReplayControl.model_validate(document)
        except orjson.JSONDecodeError:
            raise BadRequest(
                "a replay control is a JSON object", field="command", code="invalid_request"
            ) from None
        except ValidationError as exc:
            first = exc.errors(include_url=False)[0]
            where = ".".join(str(part) for part in first["loc"]) or "command"
            raise BadRequest(
                f"{where}: {first['msg'].removeprefix('Value error, ')}",
                field=where,
                code="invalid_request",
            ) from None
        return await replay.control(control)

    def close(self, ending: Ending = CLIENT_LEFT) -> None:
        """End the session (idempotent): the subscription stops, the slot is released."""
        if self.ending is not None:
            return
        self.ending = ending
        self.subscription.close()
        self._on_close(self)

    async def _check_rights(self) -> None:
        try:
            user = await self._authenticator.user_for(self._key)
        except Unauthorized:
            self.close(REVOKED)
            raise REVOKED.error() from None
        if user.name != self.user.name:
            self.close(REVOKED)
            raise REVOKED.error()
        if not await self._conversation_is_the_same():
            self.close(DELETED)
            raise DELETED.error()

    async def _conversation_is_the_same(self) -> bool:
        try:
            record = await self._service.storage.get_conversation(self.conversation_id)
        except ConversationNotFound:
            return False
        return record.created_at == self._created_at

    async def _diagnose(self) -> Ending:
        try:
            same = await self._conversation_is_the_same()
        except Exception:  # the store itself is closing
            return SHUTTING_DOWN
        return CLIENT_LEFT if same else DELETED
