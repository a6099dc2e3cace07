"""Task-tracking plan items: the checklist an agent keeps while it works."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict

TaskStatus = Literal["todo", "in_progress", "done"]


class TaskItem(BaseModel):
    """One step of a plan, as OpenHands' task tracker writes it."""

    model_config = ConfigDict(frozen=True, strict=True, extra="allow")

    id: str
    title: str
    status: TaskStatus = "todo"
    notes: str = ""
