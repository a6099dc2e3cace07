"""Observation kinds threadline's own agents do not produce but recorded OpenHands
sessions contain. They load, filter and serialize back unchanged."""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import Field

from events.base import OpenModel
from events.observations import EmptyExtras, ObservationBase


class IPythonExtras(OpenModel):
    code: str
    image_urls: list[str] | None = None


class IPythonRunCellObservation(ObservationBase):
    openhands_name: ClassVar[str] = "IPythonRunCellObservation"
    observation: Literal["run_ipython"] = "run_ipython"
    extras: IPythonExtras
    success: bool = True

    def default_message(self) -> str:
        return "Code executed in IPython cell."


class BrowserExtras(OpenModel):
    url: str
    trigger_by_action: str = ""
    error: bool = False


class BrowserOutputObservation(ObservationBase):
    openhands_name: ClassVar[str] = "BrowserOutputObservation"
    observation: Literal["browse"] = "browse"
    extras: BrowserExtras

    def default_message(self) -> str:
        return f"Visited {self.extras.url}"


class MCPExtras(OpenModel):
    name: str = ""
    arguments: dict[str, Any] = Field(default_factory=dict)


class MCPObservation(ObservationBase):
    openhands_name: ClassVar[str] = "MCPObservation"
    observation: Literal["mcp"] = "mcp"
    extras: MCPExtras = Field(default_factory=MCPExtras)


class RecallExtras(OpenModel):
    recall_type: Literal["workspace_context", "knowledge"]


class RecallObservation(ObservationBase):
    openhands_name: ClassVar[str] = "RecallObservation"
    observation: Literal["recall"] = "recall"
    extras: RecallExtras

    def default_message(self) -> str:
        if self.extras.recall_type == "workspace_context":
            return "Added workspace context"
        return "Added microagent knowledge"


class DelegateExtras(OpenModel):
    outputs: dict[str, Any] = Field(default_factory=dict)


class AgentDelegateObservation(ObservationBase):
    openhands_name: ClassVar[str] = "AgentDelegateObservation"
    observation: Literal["delegate"] = "delegate"
    extras: DelegateExtras = Field(default_factory=DelegateExtras)

    def default_message(self) -> str:
        return ""


class AgentCondensationObservation(ObservationBase):
    openhands_name: ClassVar[str] = "AgentCondensationObservation"
    observation: Literal["condense"] = "condense"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)


class DownloadExtras(OpenModel):
    file_path: str


class FileDownloadObservation(ObservationBase):
    openhands_name: ClassVar[str] = "FileDownloadObservation"
    observation: Literal["download"] = "download"
    extras: DownloadExtras

    def default_message(self) -> str:
        return f"Downloaded the file at location: {self.extras.file_path}"


class LoopDetectionObservation(ObservationBase):
    openhands_name: ClassVar[str] = "LoopDetectionObservation"
    observation: Literal["loop_detection"] = "loop_detection"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)

    def default_message(self) -> str:
        return ""


class NullObservation(ObservationBase):
    openhands_name: ClassVar[str] = "NullObservation"
    observation: Literal["null"] = "null"
    extras: EmptyExtras = Field(default_factory=EmptyExtras)

    def default_message(self) -> str:
        return "No observation"


OTHER_OBSERVATION_TYPES: tuple[type[ObservationBase], ...] = (
    IPythonRunCellObservation,
    BrowserOutputObservation,
    MCPObservation,
    RecallObservation,
    AgentDelegateObservation,
    AgentCondensationObservation,
    FileDownloadObservation,
    LoopDetectionObservation,
    NullObservation,
)
