"""Request bodies and the JSON shapes the API answers with."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from runtime.repository import check_branch, check_git_provider, check_repository
from server.auth import public_id
from storage import ConversationRecord

CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")

# Bounds on what a client may send, in characters (a character is at most 4 bytes).
TITLE_MAX = 200
MESSAGE_MAX = 100_000
"""A message to the agent, or the instructions it is given."""
NAME_MAX = 1_000
"""A repository, branch, git provider or agent name."""
IMAGE_URLS_MAX = 10
IMAGE_URL_MAX = 1_000_000
"""An image URL may be a ``data:`` URL carrying the image itself."""
CONFIG_BYTES_MAX = 64 * 1024
"""``mcp_config``, ``suggested_task``, ``create_microagent``: their JSON, in bytes."""
ITERATIONS_MAX = 1_000_000
BUDGET_MAX = 1_000_000.0

Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]
ImageUrls = Annotated[
    list[Annotated[str, StringConstraints(max_length=IMAGE_URL_MAX)]],
    Field(max_length=IMAGE_URLS_MAX),
]


def check_conversation_id(value: str) -> str:
    """1-100 letters, digits, ``.``, ``_`` and ``-``, starting with a letter or digit: an
    id is a path segment of the API and names the conversation's workspace."""
    if not CONVERSATION_ID.fullmatch(value):
        raise ValueError(
            "must be 1-100 letters, digits, '.', '_' or '-', starting with a letter or digit"
        )
    return value


def _optional(check: Callable[[str], str]) -> Callable[[str | None], str | None]:
    return lambda value: None if value is None else check(value)


class CreateConversation(BaseModel):
    """``POST /api/conversations`` (OpenHands' InitSessionRequest, plus agent limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    initial_user_msg: str | None = Field(default=None, max_length=MESSAGE_MAX)
    repository: Name | None = None
    git_provider: Name | None = None
    selected_branch: Name | None = None
    image_urls: ImageUrls = Field(default_factory=list)
    replay_json: str | None = None
    """Bounded by the import body cap (``THREADLINE_IMPORT_MAX_BYTES``)."""
    replay_mode: Literal["view", "execute", "recorded"] | None = None
    """What ``replay_json`` is for (`server.replays`); ``execute`` when not given."""
    conversation_instructions: str | None = Field(default=None, max_length=MESSAGE_MAX)
    mcp_config: dict[str, Any] | None = None
    suggested_task: dict[str, Any] | None = None
    create_microagent: dict[str, Any] | None = None
    conversation_id: str | None = None
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    agent: Name | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)
    max_budget_per_task: float | None = Field(
        # Costs are counted in millionths of the currency: a smaller budget is none.
        default=None,
        ge=0.000001,
        le=BUDGET_MAX,
        allow_inf_nan=False,
    )
    priority: int = Field(default=5, ge=1, le=10)

    @field_validator("conversation_id")
    @classmethod
    def _safe_id(cls, value: str | None) -> str | None:
        return None if value is None else check_conversation_id(value)

    # What git will be given: checked here for form; local paths against the operator's
    # roots by the service (`server.runtimes.check_new_conversation`).
    _repository = field_validator("repository")(_optional(check_repository))
    _branch = field_validator("selected_branch")(_optional(check_branch))
    _provider = field_validator("git_provider")(_optional(check_git_provider))

    @field_validator("mcp_config", "suggested_task", "create_microagent")
    @classmethod
    def _small_config(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None and len(orjson.dumps(value)) > CONFIG_BYTES_MAX:
            raise ValueError(f"must be at most {CONFIG_BYTES_MAX} bytes of JSON")
        return value


class UpdateConversation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=TITLE_MAX)


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1, max_length=MESSAGE_MAX)
    image_urls: ImageUrls = Field(default_factory=list)


def conversation_info(
    record: ConversationRecord, live: dict[str, Any], currency: str = "USD"
) -> dict[str, Any]:
    """A conversation as OpenHands' ConversationInfo, plus threadline's fields; ``live``
    (control values, queue position) wins over what the record last saw."""
    return {
        "conversation_id": public_id(record.id),
        "title": record.title,
        "status": record.status,
        "agent_state": record.agent_state,
        "created_at": record.created_at.isoformat(),
        "last_updated_at": record.updated_at.isoformat(),
        "selected_repository": record.repository,
        "selected_branch": record.selected_branch,
        "git_provider": record.git_provider,
        "trigger": record.trigger,
        "owner": record.owner,
        "agent": record.settings.get("agent"),
        "priority": record.priority,
        "iteration": record.iterations,
        "max_iterations": record.max_iterations,
        "accumulated_cost": record.accumulated_cost,
        "max_budget_per_task": record.max_budget,
        "currency": currency,
        "held_by": None,
        "queue_position": None,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "url": f"/api/conversations/{public_id(record.id)}",
        "replay": replay_info(record),
    } | live


def replay_info(record: ConversationRecord) -> dict[str, Any] | None:
    """A replay's mode, recording (by its public id) and, once done, its summary."""
    replay = record.settings.get("replay")
    if not isinstance(replay, dict):
        return None
    shown = dict(replay)
    if isinstance(shown.get("source"), str):
        shown["source"] = public_id(shown["source"])
    return shown
