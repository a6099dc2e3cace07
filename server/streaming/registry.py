"""`StreamSessions`: opens every stream session, and ends them when their rights go.

It is the one place that knows all open sessions, so it can:

- refuse a session over the caps (per user, and for the whole server) with 429;
- end the sessions of a conversation when it is deleted;
- end the sessions of a revoked key: keys are revoked by ``threadline keys`` beside the
  server, so a watcher looks at the key table every few seconds while keyed sessions
  are open (one query, however many sessions);
- end every session at shutdown.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import Counter
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from server.auth import Authenticator, User
from server.errors import BadRequest, NotFound, TooManyRequests
from server.logs import CONVERSATION
from server.settings import Settings
from server.streaming.lookups import ConversationLookups
from server.streaming.pacing import (
    Clock,
    LoopClock,
    PacedReplay,
    ReplayControl,
    replay_start_from,
)
from server.streaming.session import DELETED, REVOKED, SHUTTING_DOWN, Ending, StreamSession
from storage import Storage, Subscription

if TYPE_CHECKING:
    from server.service import ConversationService

logger = logging.getLogger(__name__)

KEY_RECHECK_SECONDS = 2.0
LATEST_EVENT_ID_MAX = 2**63 - 1
RETRY_AFTER_SECONDS = 5.0


def parse_latest_event_id(raw: str | None) -> int:
    """-1 (nothing seen yet) up to the largest id a log can hold. Raises `BadRequest`."""
    if raw is None or raw == "":
        return -1
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(
            f"latest_event_id must be an integer, got {raw[:40]!r}", field="latest_event_id"
        ) from None
    if not -1 <= value <= LATEST_EVENT_ID_MAX:
        raise BadRequest(
            f"latest_event_id must be between -1 and {LATEST_EVENT_ID_MAX}",
            field="latest_event_id",
        )
    return value


class StreamSessions:
    def __init__(
        self,
        storage: Storage,
        authenticator: Authenticator,
        service: ConversationService,
        settings: Settings,
        clock: Clock | None = None,
    ) -> None:
        self._clock = clock or LoopClock()
        self._storage = storage
        self._authenticator = authenticator
        self._service = service
        self._settings = settings
        self._lookups = ConversationLookups(storage)
        self._open: set[StreamSession] = set()
        self._per_user: Counter[str] = Counter()
        self._watcher: asyncio.Task[None] | None = None
        self.closing = False

    async def open(
        self,
        *,
        transport: str,
        conversation_id: str | None,
        key: str | None,
        latest_event_id: str | None,
        query: Mapping[str, str] | None = None,
        until: str | None = None,
    ) -> StreamSession:
        """A session for the client, from the event after ``latest_event_id``; with
        ``replay=1`` in ``query``, a paced replay of the log (`server.streaming.pacing`).
        Raises `ApiError`: 400, 401, 404 (as for REST), 429 over a cap, 503 when
        shutting down."""
        if self.closing:
            raise SHUTTING_DOWN.error()
        if not conversation_id:
            raise BadRequest("conversation_id is required", field="conversation_id")
        after_id = parse_latest_event_id(latest_event_id)
        replay = replay_start_from(dict(query or {}), after_id)
        if until not in (None, "", "end"):
            raise BadRequest("until may only be end", field="until")
        user = await self._authenticator.user_for(key)
        record = await self._lookups.visible(user, conversation_id)
        CONVERSATION.set(record.id)
        self._check_caps(user.name)
        feed: Subscription | PacedReplay
        if replay is None:
            feed = self._storage.subscribe(record.id, after_id)
        else:
            last_id = await self._storage.latest_event_id(record.id)
            feed = PacedReplay(
                self._storage, record.id, start=replay, last_id=last_id, clock=self._clock
            )
        session = StreamSession(
            user=user,
            key=key,
            conversation_id=record.id,
            created_at=record.created_at,
            transport=transport,
            subscription=feed,
            authenticator=self._authenticator,
            service=self._service,
            max_message_bytes=self._settings.max_message_bytes,
            on_close=self._forget,
        )
        if until == "end":
            session.end_after = await self._storage.latest_event_id(record.id)
        self._open.add(session)
        if user.name is not None:
            self._per_user[user.name] += 1
            self._watch_keys()
        return session

    async def control_replay(
        self, replay_id: str, user: User, conversation_id: str, control: ReplayControl
    ) -> dict[str, Any]:
        """A control for a replay the caller watches (over SSE, which cannot send).
        Raises `NotFound` for a replay that is not theirs or not open."""
        for session in tuple(self._open):
            replay = session.replay
            if (
                replay is not None
                and replay.replay_id == replay_id
                and session.user.name == user.name
                and session.conversation_id == conversation_id
            ):
                return await session.control(control.model_dump(mode="json", exclude_none=True))
        raise NotFound(f"no open replay {replay_id[:40]!r} of this conversation")

    def __len__(self) -> int:
        return len(self._open)

    def by_transport(self) -> Counter[str]:
        """Open sessions per transport (websocket, socketio, sse)."""
        return Counter(session.transport for session in self._open)

    def end_conversation(self, conversation_id: str, ending: Ending = DELETED) -> None:
        self._lookups.forget(conversation_id)
        for session in tuple(self._open):
            if session.conversation_id == conversation_id:
                session.close(ending)

    def close_all(self) -> None:
        """End every session (shutdown): transports say goodbye, clients may resume."""
        self.closing = True
        for session in tuple(self._open):
            session.close(SHUTTING_DOWN)
        if self._watcher is not None:
            self._watcher.cancel()

    def _check_caps(self, user: str | None) -> None:
        settings = self._settings
        if len(self._open) >= settings.max_streams:
            raise TooManyRequests(
                f"the server holds {len(self._open)} streams, its cap",
                cap=settings.max_streams,
                scope="global",
                retry_after=RETRY_AFTER_SECONDS,
            )
        if user is not None and self._per_user[user] >= settings.max_streams_per_user:
            raise TooManyRequests(
                f"{user} holds {self._per_user[user]} streams, the per-user cap",
                cap=settings.max_streams_per_user,
                scope="user",
                retry_after=RETRY_AFTER_SECONDS,
            )

    def _forget(self, session: StreamSession) -> None:
        if session in self._open:
            self._open.discard(session)
            if session.user.name is not None:
                self._per_user[session.user.name] -= 1
                if self._per_user[session.user.name] <= 0:
                    del self._per_user[session.user.name]

    def _watch_keys(self) -> None:
        if self._watcher is None or self._watcher.done():
            self._watcher = asyncio.create_task(self._recheck_keys(), name="stream-key-watch")

    async def _recheck_keys(self) -> None:
        """While keyed sessions are open, end those whose key was revoked."""
        while any(session.key_id is not None for session in self._open):
            await asyncio.sleep(KEY_RECHECK_SECONDS)
            try:
                keys = await self._storage.list_api_keys()
            except Exception as exc:  # the store is closing, or briefly unreadable
                logger.debug("could not recheck keys: %s", exc)
                continue
            valid = {record.id for record in keys if not record.revoked}
            for session in tuple(self._open):
                if session.key_id is not None and session.key_id not in valid:
                    session.close(REVOKED)

    async def aclose(self) -> None:
        self.close_all()
        if self._watcher is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._watcher
