"""Webhooks: a conversation's events POSTed to a URL, signed, retried, recorded.

Each webhook has a dispatcher task reading its conversation's log through the same
``subscribe()`` every stream uses, from the webhook's cursor (``delivered_through``):
events whose kind the webhook wants are delivered one at a time, in order. An attempt
that fails (no answer, a non-2xx status) is retried with exponential backoff
(``THREADLINE_WEBHOOK_RETRY_BASE`` doubling, at most ``THREADLINE_WEBHOOK_MAX_ATTEMPTS``
attempts); a refusal (see `server.tasks.outbound`) is not. Every attempt is recorded;
the last one moves the cursor in the same write, so after a restart delivery resumes
from the first event not done with: at least once, ``X-Threadline-Event-Id`` for
de-duplication. A slow or dead receiver holds only its own dispatcher: its subscription
is bounded like any stream's and falls back to the log, and attempts across all
webhooks are capped (``THREADLINE_WEBHOOK_CONCURRENCY``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable

import httpx2
import orjson

from server.auth import public_id
from server.settings import Settings
from server.tasks import outbound
from server.tasks.models import WebhookSpec
from storage import (
    ConversationNotFound,
    NewDelivery,
    NewWebhook,
    Storage,
    StorageClosed,
    StorageError,
    StoredEvent,
    WebhookRecord,
)

logger = logging.getLogger(__name__)
RETRY_MAX_SECONDS = 300.0


class Webhooks:
    def __init__(self, storage: Storage, settings: Settings) -> None:
        self.storage = storage
        self.settings = settings
        self._allowed = outbound.Allowed.parse(settings.webhook_allow_hosts)
        self._client = outbound.client(settings.webhook_timeout)
        self._slots = asyncio.Semaphore(settings.webhook_concurrency)
        self._dispatchers: dict[str, asyncio.Task[None]] = {}
        self._closed = False
        self.gave_up: Callable[[], None] = lambda: None  # an event not delivered: the metric

    async def attach(
        self, conversation_id: str, owner: str | None, origin: str, spec: WebhookSpec
    ) -> WebhookRecord:
        """Set the conversation's webhook (replacing any) and start delivering from its
        first event."""
        hook = await self.storage.put_webhook(
            NewWebhook(
                conversation_id=conversation_id, owner=owner, origin=origin, url=spec.url,
                secret=spec.secret, event_kinds=spec.kinds(),
            )
        )  # fmt: skip
        self._run(hook)
        return hook

    async def detach(self, conversation_id: str) -> bool:
        self._stop(conversation_id)
        return await self.storage.delete_webhook(conversation_id)

    async def start(self) -> None:
        """Resume every stored webhook from its cursor."""
        after = 0
        while hooks := await self.storage.list_webhooks(after_id=after):
            for hook in hooks:
                self._run(hook)
            after = hooks[-1].id

    async def close(self) -> None:
        self._closed = True
        for conversation_id in list(self._dispatchers):
            self._stop(conversation_id)
        await self._client.aclose()

    # -- internals -------------------------------------------------------------------

    def _run(self, hook: WebhookRecord) -> None:
        if self._closed:
            return
        self._stop(hook.conversation_id)
        task = asyncio.create_task(self._dispatch(hook), name=f"webhook-{hook.id}")
        self._dispatchers[hook.conversation_id] = task
        task.add_done_callback(lambda done: self._forget(hook.conversation_id, done))

    def _stop(self, conversation_id: str) -> None:
        task = self._dispatchers.pop(conversation_id, None)
        if task is not None:
            task.cancel()

    def _forget(self, conversation_id: str, task: asyncio.Task[None]) -> None:
        if self._dispatchers.get(conversation_id) is task:
            del self._dispatchers[conversation_id]
        if not task.cancelled() and (error := task.exception()) is not None:
            logger.warning("webhook of %s stopped: %s", conversation_id, error)

    async def _dispatch(self, hook: WebhookRecord) -> None:
        wanted = frozenset(hook.event_kinds)
        with contextlib.suppress(StorageError):  # the conversation went, or the store
            async with self.storage.subscribe(
                hook.conversation_id, hook.delivered_through
            ) as events:
                async for stored in events:
                    kind = kind_of(stored)
                    if not wanted or kind in wanted:
                        await self._deliver(hook, stored, kind)

    async def _deliver(self, hook: WebhookRecord, stored: StoredEvent, kind: str) -> None:
        settings = self.settings
        body = payload(hook, stored)
        event_id = f"{public_id(hook.conversation_id)}:{stored.id}"
        delay = settings.webhook_retry_base
        for attempt in range(1, settings.webhook_max_attempts + 1):
            began = time.monotonic()
            status: int | None = None
            error: str | None = None
            try:
                async with self._slots:
                    status = await outbound.post_signed(
                        self._client, hook.url, body, secret=hook.secret,
                        event_id=event_id, attempt=attempt, allowed=self._allowed,
                    )  # fmt: skip
                outcome = "delivered" if 200 <= status < 300 else "retrying"
                if outcome == "retrying":
                    error = f"the receiver answered {status}"
            except outbound.Refused as exc:
                outcome, error = "refused", str(exc)
            except (httpx2.HTTPError, OSError) as exc:
                outcome, error = "retrying", f"{type(exc).__name__}: {exc}"
            last = outcome != "retrying" or attempt == settings.webhook_max_attempts
            if last and outcome == "retrying":
                outcome = "failed"
            await self._record(hook, stored, kind, attempt, outcome, status, error, began, last)
            if last:
                if outcome != "delivered":
                    self.gave_up()
                return
            await asyncio.sleep(delay)
            delay = min(delay * 2, RETRY_MAX_SECONDS)

    async def _record(
        self, hook: WebhookRecord, stored: StoredEvent, kind: str, attempt: int, outcome: str,
        status: int | None, error: str | None, began: float, last: bool,
    ) -> None:  # fmt: skip
        delivery = NewDelivery(
            webhook_id=hook.id, owner=hook.owner, origin=hook.origin,
            conversation_id=hook.conversation_id, event_id=stored.id, event_kind=kind,
            attempt=attempt, outcome=outcome, http_status=status, error=error,
            duration_ms=int((time.monotonic() - began) * 1000),
        )  # fmt: skip
        while True:
            try:
                await self.storage.record_delivery(
                    delivery, delivered_through=stored.id if last else None
                )
                return
            except (StorageClosed, ConversationNotFound):
                return  # shutting down (resumed from the cursor), or the conversation went
            except StorageError as exc:  # a full disk: the record waits for space
                logger.warning("could not record a webhook delivery: %s", exc)
                await asyncio.sleep(self.settings.webhook_retry_base * 10)


def kind_of(stored: StoredEvent) -> str:
    event = orjson.loads(stored.data)
    if "action" in event:
        return f"action:{event['action']}"
    return f"observation:{event.get('observation')}"


def payload(hook: WebhookRecord, stored: StoredEvent) -> bytes:
    """The POSTed body: the event's stored bytes, as every stream carries them, inside an
    envelope naming the conversation and what the webhook was set on."""
    kind, _, origin = hook.origin.partition(":")
    head = orjson.dumps(
        {
            "event_id": f"{public_id(hook.conversation_id)}:{stored.id}",
            "conversation_id": public_id(hook.conversation_id),
            "origin": {"type": kind, "id": public_id(origin)},
        }
    )
    return head[:-1] + b',"event":' + stored.data + b"}"
