"""Task-tracking plans: what a ``task_tracking`` action does to a conversation's plan,
and the observation that answers it (with the changes a new plan made, so a page can
show a diff)."""

from __future__ import annotations

from typing import Any

from events import TaskItem, TaskTrackingAction, TaskTrackingObservation
from events.observations import TaskTrackingExtras


def track(
    plan: list[TaskItem], action: TaskTrackingAction
) -> tuple[list[TaskItem], TaskTrackingObservation]:
    """The plan after ``action`` (``plan`` replaces it, ``view`` reads it), and the
    observation answering the action."""
    if action.args.command == "plan":
        new = list(action.args.task_list)
        changes = plan_changes(plan, new)
        return new, TaskTrackingObservation(
            content=f"Task list has been updated with {len(new)} items.",
            extras=TaskTrackingExtras.model_validate(
                {"command": "plan", "task_list": new, "changes": changes}
            ),
        )
    lines = [f"- [{_box(task.status)}] {task.title} ({task.status})" for task in plan]
    content = "\n".join(lines) or 'No task list found. Use the "plan" command to create one.'
    return plan, TaskTrackingObservation(content=content, extras=TaskTrackingExtras(command="view"))


def plan_changes(before: list[TaskItem], after: list[TaskItem]) -> list[dict[str, Any]]:
    """What a new plan changed: tasks added, removed, or whose status/title/notes moved.
    Each entry: ``{"id", "title", "change": "added"|"removed"|"updated", "from", "to"}``."""
    old = {task.id: task for task in before}
    new = {task.id: task for task in after}
    changes: list[dict[str, Any]] = []
    for task in after:
        previous = old.get(task.id)
        if previous is None:
            added = {"id": task.id, "title": task.title, "change": "added", "to": task.status}
            changes.append(added)
        elif previous != task:
            changes.append(
                {
                    "id": task.id,
                    "title": task.title,
                    "change": "updated",
                    "from": previous.model_dump(),
                    "to": task.model_dump(),
                }
            )
    changes += [
        {"id": task.id, "title": task.title, "change": "removed", "from": task.status}
        for task in before
        if task.id not in new
    ]
    return changes


def _box(status: str) -> str:
    return "x" if status == "done" else " "
