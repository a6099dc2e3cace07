"""What a finished task yields: read from its conversation's log (the finish action and
the agent's last message), its plan's progress, and the reports its workspace holds."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from events import AgentFinishAction, MessageAction, TaskItem, build_filter
from storage import Storage

_ENDINGS = build_filter(include_types=["action:finish", "action:message"])
REPORT_SUFFIXES = (".md", ".html", ".htm", ".txt", ".pdf")
MAX_REPORTS = 50


async def task_result(storage: Storage, conversation_id: str) -> dict[str, Any]:
    """``final_thought`` and ``outputs`` of the last finish action, and the agent's last
    message, from the newest events back."""
    result: dict[str, Any] = {}
    page = await storage.search_events(conversation_id, reverse=True, filter=_ENDINGS, limit=20)
    for stored in page.events:
        event = stored.to_event()
        if isinstance(event, AgentFinishAction) and "final_thought" not in result:
            result["final_thought"] = event.args.final_thought
            result["outputs"] = event.args.outputs
        elif isinstance(event, MessageAction) and event.source == "agent":
            result.setdefault("message", event.args.content)
    return result


def progress(plan: list[TaskItem]) -> dict[str, Any]:
    """How far the plan is: the share done, and the step under way."""
    done = sum(1 for item in plan if item.status == "done")
    active = next((item.title for item in plan if item.status == "in_progress"), None)
    return {
        "progress": round(done / len(plan), 3) if plan else 0,
        "active_step": active,
        "steps_done": done,
        "steps": len(plan),
    }


async def report_paths(workspace: Path) -> list[str]:
    """Report files the task left (``REPORT*`` / ``report*`` at the top of the workspace,
    anything under ``reports/``), relative to it. Links are never followed: the
    workspace is the sandbox's."""
    return await asyncio.to_thread(_reports, workspace)


def _reports(workspace: Path) -> list[str]:
    found: list[str] = []
    try:
        with os.scandir(workspace) as entries:
            for entry in entries:
                name = entry.name
                if (
                    name.lower().startswith("report")
                    and name.lower().endswith(REPORT_SUFFIXES)
                    and entry.is_file(follow_symlinks=False)
                ):
                    found.append(name)
                elif name == "reports" and entry.is_dir(follow_symlinks=False):
                    with os.scandir(entry.path) as inner:
                        found.extend(
                            f"reports/{item.name}"
                            for item in inner
                            if item.is_file(follow_symlinks=False)
                        )
    except OSError:
        return []
    return sorted(found)[:MAX_REPORTS]
