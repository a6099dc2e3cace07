"""Request bodies and the JSON shapes the API answers with."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from runtime.repository import check_branch, check_git_provider, check_repository
from server.auth import public_id
from storage import ConversationRecord

CONVERSATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,99}")


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

    initial_user_msg: str | None = None
    repository: str | None = None
    git_provider: str | None = None
    selected_branch: str | None = None
    image_urls: list[str] = Field(default_factory=list)
    replay_json: str | None = None
    conversation_instructions: str | None = None
    mcp_config: dict[str, Any] | None = None
    suggested_task: dict[str, Any] | None = None
    create_microagent: dict[str, Any] | None = None
    conversation_id: str | None = None
    title: str | None = None
    agent: str | None = None
    max_iterations: int | None = Field(default=None, ge=1)
    max_budget_per_task: float | None = Field(default=None, gt=0)
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


class UpdateConversation(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    title: str = Field(min_length=1, max_length=200)


class SendMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1)
    image_urls: list[str] = Field(default_factory=list)


def conversation_info(record: ConversationRecord, live: dict[str, Any]) -> dict[str, Any]:
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
        "queue_position": None,
        "prompt_tokens": record.prompt_tokens,
        "completion_tokens": record.completion_tokens,
        "url": f"/api/conversations/{public_id(record.id)}",
    } | live
