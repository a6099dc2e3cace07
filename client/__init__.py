"""A Python client for threadline servers: `AsyncThreadline` (asyncio) and `Threadline`
(blocking), typed, with live watching that resumes across drops and server restarts.

    from client import Threadline

    with Threadline("http://127.0.0.1:3000") as threadline:
        conversation = threadline.create("look around")
        for event in threadline.watch(conversation.id):
            print(event["id"], event.get("action") or event.get("observation"))

Imports only events/ (see tests/test_layering.py).
"""

from client.asynchronous import AsyncThreadline, default_url
from client.errors import (
    ApiError,
    BadRequest,
    ClientError,
    Conflict,
    Forbidden,
    InsufficientStorage,
    NotFound,
    PayloadTooLarge,
    ServerError,
    ServerUnreachable,
    ServiceUnavailable,
    TooManyRequests,
    Unauthorized,
)
from client.models import (
    ENDED_STATES,
    ControlResult,
    Conversation,
    ConversationList,
    Event,
    EventPage,
    Imported,
    SearchHit,
    SearchPage,
    agent_state_of,
    kind_of,
)
from client.synchronous import Threadline
from client.watching import Transport

__all__ = [
    "ENDED_STATES",
    "ApiError",
    "AsyncThreadline",
    "BadRequest",
    "ClientError",
    "Conflict",
    "ControlResult",
    "Conversation",
    "ConversationList",
    "Event",
    "EventPage",
    "Forbidden",
    "Imported",
    "InsufficientStorage",
    "NotFound",
    "PayloadTooLarge",
    "SearchHit",
    "SearchPage",
    "ServerError",
    "ServerUnreachable",
    "ServiceUnavailable",
    "Threadline",
    "TooManyRequests",
    "Transport",
    "Unauthorized",
    "agent_state_of",
    "default_url",
    "kind_of",
]
