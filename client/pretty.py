"""One line per event, for people: id, source, kind, and the gist of what happened."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from client.models import Event

WIDTH = 100


def describe(event: Event, width: int = WIDTH) -> str:
    """``  12  agent       run                  $ ls -la`` and the like."""
    kind = event.get("action") or event.get("observation") or "?"
    line = f"{event.get('id', '?'):>4}  {event.get('source') or '':<11} {kind:<20} "
    gist = " ".join(str(_gist(event, kind)).split())
    room = max(width - len(line), 20)
    if len(gist) > room:
        gist = gist[: room - 1] + "…"
    return (line + gist).rstrip()


def _gist(event: Event, kind: str) -> Any:
    args: dict[str, Any] = event.get("args") or {}
    extras: dict[str, Any] = event.get("extras") or {}
    if kind == "agent_state_changed":
        return ": ".join(filter(None, [extras.get("agent_state"), extras.get("reason")]))
    if kind == "change_agent_state":
        return args.get("thought") or args.get("agent_state")
    if tasks := args.get("task_list") or extras.get("task_list"):
        return " ".join(
            f"{_MARKS.get(task.get('status'), '[ ]')} {task.get('title')}" for task in tasks
        )
    if "observation" not in event and "command" in args:
        return f"$ {args['command']}"
    if kind == "run":
        exit_code = (extras.get("metadata") or {}).get("exit_code")
        return f"exit {exit_code}: {event.get('content', '')}"
    if "path" in args or "path" in extras:
        return args.get("path") or extras.get("path")
    return (
        args.get("content")
        or args.get("final_thought")
        or args.get("thought")
        or event.get("content")
        or event.get("message")
        or ""
    )


_MARKS = {"done": "[x]", "in_progress": "[~]", "todo": "[ ]"}


def money(amount: Decimal, currency: str) -> str:
    """``0.009 USD``, ``1.50 USD``: every digit there is, and at least the cents."""
    exponent = amount.normalize().as_tuple().exponent
    places = max(2, -exponent if isinstance(exponent, int) else 2)
    return f"{amount:.{places}f} {currency}"
