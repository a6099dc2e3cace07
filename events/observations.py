"""Observations: what happened in answer to an action. Wire key ``observation`` +
``content`` + ``extras``."""

from __future__ import annotations

from typing import ClassVar, Literal

from pydantic import Field, model_validator

from events.actions import AgentState
from events.base import EventBase, OpenModel
from events.tasks import TaskItem


class ObservationBase(EventBase):
    category: ClassVar[Literal["observation"]] = "observation"

    observation: str
    content: str = ""
    extras: OpenModel

    @property
    def kind(self) -> str:
        return f"observation:{self.observation}"

    @property
    def hidden(self) -> bool:
        return bool(self.extras.__dict__.get("hidden", False))  # no pydantic getattr miss

    def default_message(self) -> str:
        return self.content


class CmdOutputMetadata(OpenModel):
    exit_code: int = -1
    pid: int = -1
    username: str | None = None
    hostname: str | None = None
    working_dir: str | None = None
    py_interpreter_path: str | None = None
    prefix: str = ""
    suffix: str = ""


class CmdOutputExtras(OpenModel):
    command: str
    metadata: CmdOutputMetadata = Field(default_factory=CmdOutputMetadata)
    hidden: bool = False


class CmdOutputObservation(ObservationBase):
    openhands_name: ClassVar[str] = "CmdOutputObservation"
    observation: Literal["run"] = "run"
    extras: CmdOutputExtras
    success: bool | None = None

    @property
    def exit_code(self) -> int:
        return self.extras.metadata.exit_code

    @model_validator(mode="after")
    def _fill_success(self) -> CmdOutputObservation:
        if self.success is None:
            object.__setattr__(self, "success", self.extras.metadata.exit_code == 0)
        return self

    def default_message(self) -> str:
        return (
            f"Command `{self.extras.command}` executed with exit code "
            f"{self.extras.metadata.exit_code}."
        )


class FileReadExtras(OpenModel):
    path: str
    impl_source: str = "default"


class FileReadObservation(ObservationBase):
    openhands_name: ClassVar[str] = "FileReadObservation"
    observation: Literal["read"] = "read"
    extras: FileReadExtras

    def default_message(self) -> str:
        return f"I read the file {self.extras.path}."


class FileWriteExtras(OpenModel):
    path: str


class FileWriteObservation(ObservationBase):
    openhands_name: ClassVar[str] = "FileWriteObservation"
    observation: Literal["write"] = "write"
    extras: FileWriteExtras

    def default_message(self) -> str:
        return f"I wrote to the file {self.extras.path}."


class FileEditExtras(OpenModel):
    path: str
    prev_exist: bool = False
    old_content: str | None = None
    new_content: str | None = None
    impl_source: str = "llm_based_edit"
    diff: str | None = None


class FileEditObservation(ObservationBase):
    openhands_name: ClassVar[str] = "FileEditObservation"
    observation: Literal["edit"] = "edit"
    extras: FileEditExtras

    def default_message(self) -> str:
        return f"I edited the file {self.extras.path}."


class ErrorExtras(OpenModel):
    error_id: str = ""


class ErrorObservation(ObservationBase):
    openhands_name: ClassVar[str] = "ErrorObservation"
    observation: Literal["error"] = "error"
    extras: ErrorExtras = Field(default_factory=ErrorExtras)


class EmptyExtras(OpenModel):
    pass


class SuccessObservation(ObservationBase):
    openhands_name: ClassVar[str] = "SuccessObservation"
    observation: Literal["success"] = "success"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)


class UserRejectObservation(ObservationBase):
    openhands_name: ClassVar[str] = "UserRejectObservation"
    observation: Literal["user_rejected"] = "user_rejected"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)


class AgentThinkObservation(ObservationBase):
    openhands_name: ClassVar[str] = "AgentThinkObservation"
    observation: Literal["think"] = "think"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)


class AgentStateChangedExtras(OpenModel):
    agent_state: AgentState
    reason: str = ""


class AgentStateChangedObservation(ObservationBase):
    openhands_name: ClassVar[str] = "AgentStateChangedObservation"
    observation: Literal["agent_state_changed"] = "agent_state_changed"
    extras: AgentStateChangedExtras

    def default_message(self) -> str:
        return ""


class TaskTrackingExtras(OpenModel):
    command: Literal["plan", "view"] = "view"
    task_list: list[TaskItem] = Field(default_factory=list)


class TaskTrackingObservation(ObservationBase):
    openhands_name: ClassVar[str] = "TaskTrackingObservation"
    observation: Literal["task_tracking"] = "task_tracking"
    extras: TaskTrackingExtras


OBSERVATION_TYPES: tuple[type[ObservationBase], ...] = (
    CmdOutputObservation,
    FileReadObservation,
    FileWriteObservation,
    FileEditObservation,
    ErrorObservation,
    SuccessObservation,
    UserRejectObservation,
    AgentThinkObservation,
    AgentStateChangedObservation,
    TaskTrackingObservation,
)
