"""Actions: what an agent (or a user) asks to happen. Wire key ``action`` + ``args``."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from events.base import EventBase, OpenModel
from events.tasks import TaskItem

AgentState = Literal[
    "loading",
    "running",
    "awaiting_user_input",
    "awaiting_user_confirmation",
    "user_confirmed",
    "user_rejected",
    "paused",
    "stopped",
    "finished",
    "rejected",
    "error",
    "rate_limited",
]

ConfirmationState = Literal["confirmed", "rejected", "awaiting_confirmation"]


class ActionBase(EventBase):
    category: ClassVar[Literal["action"]] = "action"

    action: str
    args: OpenModel
    timeout: float | None = None

    @property
    def kind(self) -> str:
        return f"action:{self.action}"

    @property
    def hidden(self) -> bool:
        return bool(self.args.__dict__.get("hidden", False))  # no pydantic getattr miss


class MessageArgs(OpenModel):
    content: str
    file_urls: list[str] | None = None
    image_urls: list[str] | None = None
    wait_for_response: bool = False
    security_risk: int = -1


class MessageAction(ActionBase):
    openhands_name: ClassVar[str] = "MessageAction"
    action: Literal["message"] = "message"
    args: MessageArgs

    def default_message(self) -> str:
        return self.args.content


class SystemArgs(OpenModel):
    content: str
    tools: list[dict[str, Any]] | None = None
    openhands_version: str | None = None
    agent_class: str | None = None


class SystemMessageAction(ActionBase):
    openhands_name: ClassVar[str] = "SystemMessageAction"
    action: Literal["system"] = "system"
    args: SystemArgs

    def default_message(self) -> str:
        return self.args.content


class RunArgs(OpenModel):
    command: str
    is_input: bool = False
    thought: str = ""
    blocking: bool = False
    is_static: bool = False
    cwd: str | None = None
    hidden: bool = False
    confirmation_state: ConfirmationState = "confirmed"
    security_risk: int = -1


class CmdRunAction(ActionBase):
    openhands_name: ClassVar[str] = "CmdRunAction"
    action: Literal["run"] = "run"
    args: RunArgs

    def default_message(self) -> str:
        return f"Running command: {self.args.command}"


class ReadArgs(OpenModel):
    path: str
    start: int = 0
    end: int = -1
    thought: str = ""
    security_risk: int = -1
    impl_source: str = "default"
    view_range: list[int] | None = None


class FileReadAction(ActionBase):
    openhands_name: ClassVar[str] = "FileReadAction"
    action: Literal["read"] = "read"
    args: ReadArgs

    def default_message(self) -> str:
        return f"Reading file: {self.args.path}"


class WriteArgs(OpenModel):
    path: str
    content: str
    start: int = 0
    end: int = -1
    thought: str = ""
    security_risk: int = -1


class FileWriteAction(ActionBase):
    openhands_name: ClassVar[str] = "FileWriteAction"
    action: Literal["write"] = "write"
    args: WriteArgs

    def default_message(self) -> str:
        return f"Writing file: {self.args.path}"


class EditArgs(OpenModel):
    path: str
    command: str = ""
    file_text: str | None = None
    old_str: str | None = None
    new_str: str | None = None
    insert_line: int | None = None
    content: str = ""
    start: int = 1
    end: int = -1
    thought: str = ""
    security_risk: int = -1
    impl_source: str = "oh_aci"


class FileEditAction(ActionBase):
    openhands_name: ClassVar[str] = "FileEditAction"
    action: Literal["edit"] = "edit"
    args: EditArgs


class ThinkArgs(OpenModel):
    thought: str = ""


class AgentThinkAction(ActionBase):
    openhands_name: ClassVar[str] = "AgentThinkAction"
    action: Literal["think"] = "think"
    args: ThinkArgs

    def default_message(self) -> str:
        return f"I am thinking...: {self.args.thought}"


class TaskTrackingArgs(OpenModel):
    command: Literal["plan", "view"] = "view"
    task_list: list[TaskItem] = Field(default_factory=list)
    thought: str = ""


class TaskTrackingAction(ActionBase):
    openhands_name: ClassVar[str] = "TaskTrackingAction"
    action: Literal["task_tracking"] = "task_tracking"
    args: TaskTrackingArgs

    def default_message(self) -> str:
        count = len(self.args.task_list)
        if count == 0:
            return "Clearing the task list."
        return f"Managing {count} task item{'s' if count != 1 else ''}."


class FinishArgs(OpenModel):
    final_thought: str = ""
    outputs: dict[str, Any] = Field(default_factory=dict)
    thought: str = ""


class AgentFinishAction(ActionBase):
    openhands_name: ClassVar[str] = "AgentFinishAction"
    action: Literal["finish"] = "finish"
    args: FinishArgs

    def default_message(self) -> str:
        return self.args.thought or "All done! What's next on the agenda?"


class RejectArgs(OpenModel):
    outputs: dict[str, Any] = Field(default_factory=dict)
    thought: str = ""


class AgentRejectAction(ActionBase):
    openhands_name: ClassVar[str] = "AgentRejectAction"
    action: Literal["reject"] = "reject"
    args: RejectArgs

    def default_message(self) -> str:
        reason = self.args.outputs.get("reason")
        suffix = f" Reason: {reason}" if reason else ""
        return f"Task is rejected by the agent.{suffix}"


class ChangeAgentStateArgs(OpenModel):
    agent_state: AgentState
    thought: str = ""


class ChangeAgentStateAction(ActionBase):
    openhands_name: ClassVar[str] = "ChangeAgentStateAction"
    action: Literal["change_agent_state"] = "change_agent_state"
    args: ChangeAgentStateArgs

    def default_message(self) -> str:
        return f"Agent state changed to {self.args.agent_state}"


ACTION_TYPES: tuple[type[ActionBase], ...] = (
    MessageAction,
    SystemMessageAction,
    CmdRunAction,
    FileReadAction,
    FileWriteAction,
    FileEditAction,
    AgentThinkAction,
    TaskTrackingAction,
    AgentFinishAction,
    AgentRejectAction,
    ChangeAgentStateAction,
)
