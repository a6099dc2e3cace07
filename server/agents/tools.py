"""The LLM agent's tools: their JSON schemas, and turning a tool call into an action."""

from __future__ import annotations

from typing import Any

import orjson

from events import ActionBase, EventValidationError, ToolCallMetadata, parse_event

TOOLS: list[Any] = [  # the chat-completions "tools" parameter
    {
        "type": "function",
        "function": {
            "name": "execute_bash",
            "description": (
                "Run a shell command in the workspace. A command quiet for a while returns "
                "what it printed and keeps running: call again with is_input true and an "
                "empty command to wait, 'C-c' to interrupt, or text to type into it."
            ),
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"type": "string"},
                    "is_input": {"type": "boolean"},
                    "timeout": {"type": "number", "description": "seconds"},
                },
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "str_replace_editor",
            "description": "View, create or edit a file in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"enum": ["view", "create", "str_replace", "insert"]},
                    "path": {"type": "string"},
                    "file_text": {"type": "string"},
                    "old_str": {"type": "string"},
                    "new_str": {"type": "string"},
                    "insert_line": {"type": "integer"},
                },
                "required": ["command", "path"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "task_tracker",
            "description": "Plan the work as a task list, or view the current plan.",
            "parameters": {
                "type": "object",
                "properties": {
                    "command": {"enum": ["view", "plan"]},
                    "task_list": {
                        "type": "array",
                        "items": {
                            "type": "object",
                            "properties": {
                                "id": {"type": "string"},
                                "title": {"type": "string"},
                                "status": {"enum": ["todo", "in_progress", "done"]},
                                "notes": {"type": "string"},
                            },
                            "required": ["id", "title", "status"],
                        },
                    },
                },
                "required": ["command"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "think",
            "description": "Think out loud; nothing happens in the workspace.",
            "parameters": {
                "type": "object",
                "properties": {"thought": {"type": "string"}},
                "required": ["thought"],
            },
        },
    },
    {
        "type": "function",
        "function": {
            "name": "finish",
            "description": "Say the task is done, with a final message for the user.",
            "parameters": {
                "type": "object",
                "properties": {"message": {"type": "string"}},
                "required": ["message"],
            },
        },
    },
]


class ToolCallError(ValueError):
    """The model asked for something that is not a valid call of our tools."""


def action_for(name: str, arguments: str, metadata: ToolCallMetadata) -> ActionBase:
    """The action a tool call asks for. Raises `ToolCallError` saying what is wrong, so
    the model can be told and try again."""
    try:
        given = orjson.loads(arguments or "{}")
    except orjson.JSONDecodeError as exc:
        raise ToolCallError(f"the arguments of {name} are not valid JSON: {exc}") from None
    if not isinstance(given, dict):
        raise ToolCallError(f"the arguments of {name} must be a JSON object")
    match name:
        case "execute_bash":
            document: dict[str, Any] = {
                "action": "run",
                "args": {"command": given.get("command"), "is_input": bool(given.get("is_input"))},
            }
            if given.get("timeout") is not None:
                document["timeout"] = float(given["timeout"])
                document["args"]["blocking"] = True
        case "str_replace_editor":
            fields = ("command", "path", "file_text", "old_str", "new_str", "insert_line")
            document = {"action": "edit", "args": {k: given[k] for k in fields if k in given}}
        case "task_tracker":
            arguments_ = {"command": given.get("command", "view")}
            if "task_list" in given:
                arguments_["task_list"] = [
                    {"notes": "", **item} if isinstance(item, dict) else item
                    for item in given["task_list"]
                ]
            document = {"action": "task_tracking", "args": arguments_}
        case "think":
            document = {"action": "think", "args": {"thought": given.get("thought", "")}}
        case "finish":
            message = given.get("message", "")
            document = {"action": "finish", "args": {"final_thought": message, "thought": message}}
        case _:
            known = ", ".join(tool["function"]["name"] for tool in TOOLS)
            raise ToolCallError(f"there is no tool {name!r}; the tools are {known}")
    document["source"] = "agent"
    document["tool_call_metadata"] = metadata.model_dump()
    try:
        action = parse_event(document)
    except EventValidationError as exc:
        raise ToolCallError(f"bad arguments for {name}: {exc}") from None
    if not isinstance(action, ActionBase):
        raise ToolCallError(f"{name} did not describe an action")
    return action
