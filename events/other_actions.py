"""Action kinds threadline's own agents do not produce but recorded OpenHands sessions
contain (browsing, IPython, MCP, recall, delegation, condensation). They load, filter and
serialize back unchanged."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from events.actions import ActionBase
from events.base import OpenModel


class IPythonArgs(OpenModel):
    code: str
    thought: str = ""
    include_extra: bool = True
    confirmation_state: str = "confirmed"
    security_risk: int = -1
    kernel_init_code: str = ""


class IPythonRunCellAction(ActionBase):
    openhands_name: ClassVar[str] = "IPythonRunCellAction"
    action: Literal["run_ipython"] = "run_ipython"
    args: IPythonArgs

    def default_message(self) -> str:
        return f"Running Python code interactively: {self.args.code}"


class BrowseArgs(OpenModel):
    url: str
    thought: str = ""
    security_risk: int = -1
    return_axtree: bool = False


class BrowseURLAction(ActionBase):
    openhands_name: ClassVar[str] = "BrowseURLAction"
    action: Literal["browse"] = "browse"
    args: BrowseArgs

    def default_message(self) -> str:
        return f"I am browsing the URL: {self.args.url}"


class BrowseInteractiveArgs(OpenModel):
    browser_actions: str
    thought: str = ""
    browsergym_send_msg_to_user: str = ""
    security_risk: int = -1
    return_axtree: bool = False


class BrowseInteractiveAction(ActionBase):
    openhands_name: ClassVar[str] = "BrowseInteractiveAction"
    action: Literal["browse_interactive"] = "browse_interactive"
    args: BrowseInteractiveArgs

    def default_message(self) -> str:
        return f"I am interacting with the browser:\n```\n{self.args.browser_actions}\n```"


class MCPArgs(OpenModel):
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    thought: str = ""
    security_risk: int = -1


class MCPAction(ActionBase):
    openhands_name: ClassVar[str] = "MCPAction"
    action: Literal["call_tool_mcp"] = "call_tool_mcp"
    args: MCPArgs

    def default_message(self) -> str:
        return (
            f"I am interacting with the MCP server with name:\n```\n{self.args.name}\n```\n"
            f"and arguments:\n```\n{self.args.arguments!r}\n```"
        )


class RecallArgs(OpenModel):
    recall_type: Literal["workspace_context", "knowledge"]
    query: str = ""
    thought: str = ""


class RecallAction(ActionBase):
    openhands_name: ClassVar[str] = "RecallAction"
    action: Literal["recall"] = "recall"
    args: RecallArgs

    def default_message(self) -> str:
        return f"Retrieving content for: {self.args.query[:50]}"


class DelegateArgs(OpenModel):
    agent: str
    inputs: dict[str, Any] = Field(default_factory=dict)
    thought: str = ""


class AgentDelegateAction(ActionBase):
    openhands_name: ClassVar[str] = "AgentDelegateAction"
    action: Literal["delegate"] = "delegate"
    args: DelegateArgs

    def default_message(self) -> str:
        return f"I'm asking {self.args.agent} for help with this task."


class CondensationArgs(OpenModel):
    forgotten_event_ids: list[int] | None = None
    forgotten_events_start_id: int | None = None
    forgotten_events_end_id: int | None = None
    summary: str | None = None
    summary_offset: int | None = None


class CondensationAction(ActionBase):
    openhands_name: ClassVar[str] = "CondensationAction"
    action: Literal["condensation"] = "condensation"
    args: CondensationArgs

    def default_message(self) -> str:
        if self.args.summary:
            return f"Summary: {self.args.summary}"
        return f"Condenser is dropping the events: {self.args.forgotten_event_ids}."


class EmptyArgs(OpenModel):
    pass


class CondensationRequestAction(ActionBase):
    openhands_name: ClassVar[str] = "CondensationRequestAction"
    action: Literal["condensation_request"] = "condensation_request"
    args: EmptyArgs = Field(default_factory=EmptyArgs)

    def default_message(self) -> str:
        return "Requesting a condensation of the conversation history."


class LoopRecoveryArgs(OpenModel):
    option: int = 1


class LoopRecoveryAction(ActionBase):
    openhands_name: ClassVar[str] = "LoopRecoveryAction"
    action: Literal["loop_recovery"] = "loop_recovery"
    args: LoopRecoveryArgs = Field(default_factory=LoopRecoveryArgs)


class NullAction(ActionBase):
    openhands_name: ClassVar[str] = "NullAction"
    action: Literal["null"] = "null"
    args: EmptyArgs = Field(default_factory=EmptyArgs)

    def default_message(self) -> str:
        return "No action"


OTHER_ACTION_TYPES: tuple[type[ActionBase], ...] = (
    IPythonRunCellAction,
    BrowseURLAction,
    BrowseInteractiveAction,
    MCPAction,
    RecallAction,
    AgentDelegateAction,
    CondensationAction,
    CondensationRequestAction,
    LoopRecoveryAction,
    NullAction,
)
