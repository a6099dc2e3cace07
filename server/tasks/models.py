"""Request bodies of the task APIs and the statuses they speak.

- Start tasks (OpenHands' app-conversations): ``WORKING`` ... ``READY`` | ``ERROR``.
- Background and single tasks: ``created`` -> ``running`` -> ``completed`` | ``failed`` |
  ``cancelled`` (and ``created`` -> ``cancelled``).
"""

from __future__ import annotations

import re
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from events import EventValidationError, resolve_event_types
from server.schemas import BUDGET_MAX, ITERATIONS_MAX, MESSAGE_MAX, NAME_MAX, TITLE_MAX
from server.tasks.outbound import check_url_form

CREATED, RUNNING, COMPLETED, FAILED, CANCELLED = (
    "created", "running", "completed", "failed", "cancelled",
)  # fmt: skip
OPEN = (CREATED, RUNNING)
FINAL = (COMPLETED, FAILED, CANCELLED)

START_PHASES = (
    "WORKING",
    "WAITING_FOR_SANDBOX",
    "PREPARING_REPOSITORY",
    "RUNNING_SETUP_SCRIPT",
    "SETTING_UP_GIT_HOOKS",
    "STARTING_CONVERSATION",
    "READY",
)
START_FINAL = ("READY", "ERROR")
START_OPEN = START_PHASES[:-1]

BACKGROUND, SINGLE, START = "background", "single", "start"
TASK_ID = re.compile(r"task-[0-9a-f]{32}")
"""Generated: never one of the static paths beside ``/api/tasks/{task_id}``."""
PARAMETERS_BYTES_MAX = 64 * 1024

Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]


class WebhookSpec(BaseModel):
    """Where to POST a conversation's events, signed with ``secret`` (HMAC-SHA256)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    url: str = Field(min_length=1, max_length=2000)
    secret: str = Field(min_length=16, max_length=256)
    events: list[Annotated[str, StringConstraints(max_length=100)]] = Field(
        default_factory=list, max_length=50
    )
    """Event kinds (``task_state``, ``observation:agent_state_changed``, ``run``...); none:
    every event."""

    _http_url = field_validator("url")(check_url_form)

    @field_validator("events")
    @classmethod
    def _known_kinds(cls, value: list[str]) -> list[str]:
        try:
            resolve_event_types(value)
        except EventValidationError as exc:
            raise ValueError(exc.problem) from None
        return value

    def kinds(self) -> list[str]:
        return sorted(resolve_event_types(self.events))


class CreateTask(BaseModel):
    """``POST /api/tasks`` (a background task)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_type: Literal["conversation", "shell"]
    description: str = Field(min_length=1, max_length=MESSAGE_MAX)
    parameters: dict[str, Any] = Field(default_factory=dict)
    """conversation: ``message`` (default: the description), ``agent``, ``repository``,
    ``git_provider``, ``branch``, ``max_iterations``, ``max_budget_per_task``; shell:
    ``command`` (required)."""
    priority: int = Field(default=1, ge=1, le=10)
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    webhook: WebhookSpec | None = None

    @field_validator("parameters")
    @classmethod
    def _small(cls, value: dict[str, Any]) -> dict[str, Any]:
        if len(orjson.dumps(value)) > PARAMETERS_BYTES_MAX:
            raise ValueError(f"must be at most {PARAMETERS_BYTES_MAX} bytes of JSON")
        return value


class ConversationParameters(BaseModel):
    """What a ``conversation`` task's parameters may say."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str | None = Field(default=None, min_length=1, max_length=MESSAGE_MAX)
    agent: Name | None = None
    repository: Name | None = None
    git_provider: Name | None = None
    branch: Name | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)
    max_budget_per_task: float | None = Field(
        default=None, gt=0, le=BUDGET_MAX, allow_inf_nan=False
    )


class ShellParameters(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    command: str = Field(min_length=1, max_length=MESSAGE_MAX)


class SubmitTask(BaseModel):
    """``POST /api/tasks/submit`` (the single-task API)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    task_description: str = Field(min_length=1, max_length=MESSAGE_MAX)
    session_id: Annotated[str, StringConstraints(max_length=200)] | None = None
    llm_profile_name: Name | None = None
    upload_files_path: Name | None = None
    mcp_server_config: dict[str, Any] | str | None = None
    agent_mode: Literal["thinking", "no-thinking", "flash"] | None = None
    agent: Name | None = None
    repository: Name | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)
    max_budget_per_task: float | None = Field(
        default=None, gt=0, le=BUDGET_MAX, allow_inf_nan=False
    )
    timeout_seconds: float | None = Field(default=None, gt=0, le=7 * 86400, allow_inf_nan=False)
    webhook: WebhookSpec | None = None


class TaskControl(BaseModel):
    """pause / resume / stop / add-new-task: ``reason`` (for add-new-task, the new task)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    reason: str | None = Field(default=None, max_length=MESSAGE_MAX)


class TextContent(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    type: Literal["text"]
    text: str = Field(max_length=MESSAGE_MAX)


class InitialMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["user"] = "user"
    content: list[TextContent] = Field(min_length=1, max_length=20)

    def text(self) -> str:
        return "\n".join(part.text for part in self.content)


class Processor(WebhookSpec):
    """A callback processor; this server runs ``webhook`` ones."""

    type: Literal["webhook"]

    def webhook(self) -> WebhookSpec:
        return WebhookSpec(url=self.url, secret=self.secret, events=self.events)


class StartConversation(BaseModel):
    """``POST /api/v1/app-conversations`` (OpenHands' AppConversationStartRequest, plus
    threadline's limits)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    selected_repository: Name | None = None
    git_provider: Name | None = None
    selected_branch: Name | None = None
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    trigger: Annotated[str, StringConstraints(pattern=r"^[A-Za-z_]{1,40}$")] | None = None
    initial_message: InitialMessage | None = None
    processors: list[Processor] = Field(default_factory=list, max_length=1)
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)
    max_budget_per_task: float | None = Field(
        default=None, gt=0, le=BUDGET_MAX, allow_inf_nan=False
    )
    priority: int = Field(default=5, ge=1, le=10)
    agent: Name | None = None

    @field_validator("git_provider")
    @classmethod
    def _lower(cls, value: str | None) -> str | None:
        return None if value is None else value.lower()
