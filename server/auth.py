"""API keys and who is asking.

With no keys in the store the server is single-user: every caller is the anonymous
owner (``User(None)``) and every conversation is theirs. Once a key has been created,
every REST call needs ``X-Session-API-Key: <key>`` or ``Authorization: Bearer <key>``,
every stream its ``session_api_key``; a caller sees only the conversations they created.
Revoking keys never turns authentication off again: revoking the last one locks
everyone out rather than letting everyone in.

Each user has an id space of their own: the store keeps user ``alice``'s conversation
``report`` as ``alice/report`` (user names and conversation ids never contain ``/``), so
one user's ids neither collide with nor reveal another's.

Keys are random 256-bit tokens; the store keeps their SHA-256 digest only. A slow hash
buys nothing for tokens of that entropy.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Mapping
from dataclasses import dataclass, field

from server.errors import NotFound, Unauthorized
from server.shared_reads import shared_read
from storage import ApiKeyRecord, ConversationNotFound, ConversationRecord, Storage

KEY_PREFIX = "tl_"
MODE_CACHE_SECONDS = 2.0
SEEN_VALID_KEYS = 10_000
USER_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,63}")


@dataclass(frozen=True, slots=True)
class User:
    name: str | None
    """None for the single user of a server without keys."""
    key_id: int | None = field(default=None, compare=False)
    """The key they came with (streams watch it for revocation)."""


ANONYMOUS = User(None)


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def digest(key: str) -> bytes:
    return hashlib.sha256(key.encode()).digest()


def scoped_id(user: User, conversation_id: str) -> str:
    """The store's id of ``user``'s conversation ``conversation_id``."""
    return conversation_id if user.name is None else f"{user.name}/{conversation_id}"


def public_id(stored_id: str) -> str:
    """The id a conversation's owner knows it by."""
    return stored_id.rpartition("/")[2]


async def create_key(storage: Storage, user: str, label: str = "") -> tuple[str, ApiKeyRecord]:
    """A new key for ``user``; the key itself is returned once and never stored.
    Raises `ValueError` for a user name that is not 1-64 letters, digits and ``._@+-``."""
    if not USER_NAME.fullmatch(user):
        raise ValueError(
            f"user name {user!r} must be 1-64 characters: letters, digits and . _ @ + - "
            "(starting with a letter or digit)"
        )
    key = new_key()
    return key, await storage.add_api_key(user, digest(key), label)


def key_from_headers(headers: Mapping[str, str]) -> str | None:
    if key := headers.get("x-session-api-key"):
        return key
    authorization = headers.get("authorization", "")
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() == "bearer" and token:
        return token.strip()
    return None


class Authenticator:
    def __init__(self, storage: Storage) -> None:
        self._storage = storage
        self._keys_exist = False
        self._checked_at = float("-inf")
        self._mode_check: asyncio.Future[None] | None = None
        self._seen_valid: OrderedDict[bytes, None] = OrderedDict()
        """Digests of keys recently found valid (for rate limits only, never to admit)."""

    def vouched(self, key: str | None) -> bool:
        """Whether this key was recently found valid: rate limits count such keys on their
        own; any other key counts against its caller's address."""
        return key is not None and digest(key) in self._seen_valid

    async def keys_required(self) -> bool:
        # Keys may be created by `threadline keys create` beside the running server.
        # One read for every caller that finds the answer stale: each used to read for
        # itself, and under a reconnect storm those reads queued on the reader
        # connections until the answer stayed stale and every request added a read.
        if not self._keys_exist and time.monotonic() - self._checked_at > MODE_CACHE_SECONDS:
            if self._mode_check is None:
                self._mode_check = shared_read(self._check_mode())
            await asyncio.shield(self._mode_check)
        return self._keys_exist

    async def _check_mode(self) -> None:
        started = time.monotonic()
        try:
            self._keys_exist = await self._storage.count_api_keys(include_revoked=True) > 0
            self._checked_at = started
        finally:
            self._mode_check = None

    async def user_for(self, key: str | None) -> User:
        """The caller a key belongs to. Raises `Unauthorized` when keys are required and
        the key is missing, unknown or revoked."""
        if not await self.keys_required():
            return ANONYMOUS
        if not key:
            raise Unauthorized("an API key is required (X-Session-API-Key or Bearer)")
        key_digest = digest(key)
        record = await self._storage.find_api_key(key_digest)
        if record is None:
            self._seen_valid.pop(key_digest, None)
            raise Unauthorized("the API key is not valid")
        self._seen_valid[key_digest] = None
        self._seen_valid.move_to_end(key_digest)
        while len(self._seen_valid) > SEEN_VALID_KEYS:
            self._seen_valid.popitem(last=False)
        return User(record.user, record.id)


def can_see(user: User, conversation: ConversationRecord) -> bool:
    return user.name is None or conversation.owner == user.name


async def visible_conversation(
    storage: Storage, user: User, conversation_id: str
) -> ConversationRecord:
    """``user``'s conversation by the id they know it by; others' answer exactly like
    missing ones."""
    try:
        record = await storage.get_conversation(scoped_id(user, conversation_id))
    except ConversationNotFound:
        record = None
    if record is None or not can_see(user, record):
        raise NotFound(f"conversation {conversation_id!r} not found")
    return record
