"""What a model was asked and answered, kept in the log for deterministic re-runs.

The LLM agent logs one hidden ``model_exchange`` observation per model call: the
request's digest (SHA-256 of the exact bytes posted), the digests of the messages the
call added to the chat (the chat only grows, so the recording of every call's new
messages is the whole chat, without storing it again), and the reply as the model sent
it. A re-run answers a request whose digest it finds here with the recorded reply, and
names the first message that differs when it finds none.
"""

from __future__ import annotations

import hashlib
from typing import Any, ClassVar, Literal

from pydantic import Field

from events.base import OpenModel
from events.observations import ObservationBase


class ModelExchangeExtras(OpenModel):
    call: int
    """The conversation's model calls are numbered 0, 1, ... across its runs."""
    request_digest: str
    new_messages: list[str] = Field(default_factory=list)
    """Digests of the chat's last messages, those this call added, in order."""
    message_count: int = 0
    """How many messages the chat had."""
    model: str = ""
    """The model asked for (the request names it; a re-run asks for the same)."""
    reply: dict[str, Any] = Field(default_factory=dict)
    hidden: bool = True


class ModelExchangeObservation(ObservationBase):
    openhands_name: ClassVar[str] = "ModelExchangeObservation"
    observation: Literal["model_exchange"] = "model_exchange"
    extras: ModelExchangeExtras

    def default_message(self) -> str:
        return ""


def digest(data: bytes) -> str:
    """``sha256:<hex>`` of the bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
