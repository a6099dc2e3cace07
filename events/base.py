"""Fields every event shares, in the OpenHands V0 wire shape.

An event is a frozen pydantic model. Actions carry ``action`` + ``args``; observations
carry ``observation`` + ``content`` + ``extras``. ``id`` and ``timestamp`` are ``None``
until the log assigns them at append.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    field_serializer,
    field_validator,
    model_validator,
)

Source = Literal["user", "agent", "environment"]

# Top-level keys OpenHands omits from the wire when their value is None.
OMITTED_WHEN_NONE: frozenset[str] = frozenset(
    {
        "id", "timestamp", "source", "cause", "tool_call_metadata", "llm_metrics", "timeout",
        "original_id", "original_cause",
    }
)  # fmt: skip


class WireModel(BaseModel):
    """Strict, immutable; unknown keys are errors."""

    model_config = ConfigDict(frozen=True, strict=True, extra="forbid")


class OpenModel(BaseModel):
    """Strict and immutable, but keeps keys it does not declare.

    Used for ``args``, ``extras`` and metric blocks, whose key sets grow between OpenHands
    versions: a recorded trajectory with a newer key loads and serializes back unchanged.
    """

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")


class ToolCallMetadata(OpenModel):
    """Which tool call of which model response produced an action."""

    function_name: str
    tool_call_id: str
    model_response: dict[str, Any] = Field(default_factory=dict)
    total_calls_in_response: int = 1


class TokenUsage(OpenModel):
    model: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cache_read_tokens: int = 0
    cache_write_tokens: int = 0
    context_window: int = 0
    per_turn_token: int = 0
    response_id: str = ""


class LLMMetrics(OpenModel):
    """Accumulated LLM usage as of this event (OpenHands' ``Metrics.get()``)."""

    accumulated_cost: float = 0.0
    max_budget_per_task: float | None = None
    accumulated_token_usage: TokenUsage = Field(default_factory=TokenUsage)
    costs: list[dict[str, Any]] = Field(default_factory=list)
    response_latencies: list[dict[str, Any]] = Field(default_factory=list)
    token_usages: list[dict[str, Any]] = Field(default_factory=list)


class EventBase(WireModel):
    """The envelope shared by actions and observations."""

    category: ClassVar[Literal["action", "observation"]]
    openhands_name: ClassVar[str]
    keeps_recorded_shape: ClassVar[bool] = False
    """Serialize only the keys given (recorded events), not every declared field."""

    id: int | None = None
    timestamp: datetime | None = Field(default=None, strict=False)
    source: Source | None = None
    message: str = ""
    cause: int | None = None
    tool_call_metadata: ToolCallMetadata | None = None
    llm_metrics: LLMMetrics | None = None
    original_id: int | None = None
    """An imported event's id in the recording it came from (see `events.trajectory`)."""
    original_cause: int | None = None
    """An imported event's ``cause`` when it named an event the recording left out."""

    @field_validator("id")
    @classmethod
    def _invalid_id_is_none(cls, value: int | None) -> int | None:
        return None if value == -1 else value  # OpenHands' INVALID_ID: not yet stored

    @field_validator("timestamp")
    @classmethod
    def _assume_utc(cls, value: datetime | None) -> datetime | None:
        # OpenHands V0 wrote naive local-time stamps; recorded trajectories are read as UTC.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    @field_serializer("timestamp")
    def _iso_with_offset(self, value: datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(UTC).isoformat(timespec="microseconds")

    def default_message(self) -> str:
        """The message OpenHands derives from the event when none is given."""
        return ""

    @model_validator(mode="after")
    def _fill_message(self) -> EventBase:
        if "message" not in self.model_fields_set:
            # Frozen model: the one place a field is set after validation, as OpenHands
            # derives `message` from the rest of the event when it is not given.
            object.__setattr__(self, "message", self.default_message())
        return self

    @property
    def kind(self) -> str:
        """``"action:run"``, ``"observation:run"``: the category and the wire kind."""
        raise NotImplementedError

    @property
    def hidden(self) -> bool:
        """Whether clients should hide this event (OpenHands' ``hidden`` arg/extra)."""
        raise NotImplementedError
