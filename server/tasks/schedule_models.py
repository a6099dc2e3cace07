"""Request bodies of the schedule API (reference 002's ScheduleCreate / ScheduleUpdate,
plus the flow each run starts from, and threadline's policies)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, field_validator

from server.schemas import BUDGET_MAX, ITERATIONS_MAX, MESSAGE_MAX, NAME_MAX, TITLE_MAX
from server.schemas import check_conversation_id as check_flow_id
from server.tasks.cron import zone
from server.tasks.models import WebhookSpec

Name = Annotated[str, StringConstraints(max_length=NAME_MAX)]


class Flow(BaseModel):
    """A saved conversation template: what each run of a schedule starts with."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    message: str = Field(min_length=1, max_length=MESSAGE_MAX)
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    agent: Name | None = None
    repository: Name | None = None
    git_provider: Name | None = None
    branch: Name | None = None
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)
    max_budget_per_task: float | None = Field(
        default=None, gt=0, le=BUDGET_MAX, allow_inf_nan=False
    )
    priority: int = Field(default=5, ge=1, le=10)


Overlap = Literal["skip", "queue"]
CatchUp = Literal["once", "skip"]


class ScheduleChanges(BaseModel):
    """What a PUT may change (every field optional)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cron_expression: str | None = Field(default=None, max_length=200)
    is_enabled: bool | None = None
    description: str | None = Field(default=None, max_length=2000)
    timezone: str | None = Field(default=None, max_length=64)
    overlap_policy: Overlap | None = None
    """``skip``: a firing while the previous run is active is skipped; ``queue``: it
    starts as soon as that run ends (at most one waits)."""
    catch_up: CatchUp | None = None
    """Firings missed while the server was down: ``once`` starts one run at startup,
    ``skip`` starts none; either way the next firing is the next due one."""
    budget_cap: float | None = Field(default=None, gt=0, le=BUDGET_MAX, allow_inf_nan=False)
    """Currency all runs together may spend; once reached the schedule is disabled."""
    flow: Flow | None = None
    webhook: WebhookSpec | None = None

    @field_validator("timezone")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            zone(value)
        return value


class CreateSchedule(ScheduleChanges):
    """``POST /api/schedule``."""

    flow_id: str
    cron_expression: str = Field(max_length=200)
    flow: Flow

    @field_validator("flow_id")
    @classmethod
    def _flow_id(cls, value: str) -> str:
        return check_flow_id(value)
