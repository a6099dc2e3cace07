"""threadline's typed event model: actions, observations, task plans, the wire format and
the history filter. Pure data: imports pydantic and orjson, nothing else of ours."""

from events.actions import (
    ActionBase,
    AgentFinishAction,
    AgentRejectAction,
    AgentState,
    AgentThinkAction,
    ChangeAgentStateAction,
    CmdRunAction,
    FileEditAction,
    FileReadAction,
    FileWriteAction,
    MessageAction,
    SystemMessageAction,
    TaskTrackingAction,
)
from events.automation import ScheduleObservation, TaskStateObservation
from events.base import EventBase, LLMMetrics, Source, ToolCallMetadata
from events.errors import EventValidationError, ThreadlineError
from events.exchanges import ModelExchangeObservation, digest
from events.filter import EventFilter, build_filter, resolve_event_types
from events.observations import (
    AgentStateChangedObservation,
    AgentThinkObservation,
    CmdOutputObservation,
    ErrorObservation,
    FileEditObservation,
    FileReadObservation,
    FileWriteObservation,
    ObservationBase,
    SuccessObservation,
    TaskTrackingObservation,
    UserRejectObservation,
)
from events.recorded import RecordedAction, RecordedObservation, load_event, parse_recorded
from events.serialization import (
    EVENT_TYPES,
    TYPE_BY_KIND,
    Event,
    dump_event,
    event_to_dict,
    parse_event,
)
from events.tasks import TaskItem, TaskStatus
from events.text import searchable_text
from events.trajectory import recorded_events, trajectory_items

__all__ = [
    "EVENT_TYPES",
    "TYPE_BY_KIND",
    "ActionBase",
    "AgentFinishAction",
    "AgentRejectAction",
    "AgentState",
    "AgentStateChangedObservation",
    "AgentThinkAction",
    "AgentThinkObservation",
    "ChangeAgentStateAction",
    "CmdOutputObservation",
    "CmdRunAction",
    "ErrorObservation",
    "Event",
    "EventBase",
    "EventFilter",
    "EventValidationError",
    "FileEditAction",
    "FileEditObservation",
    "FileReadAction",
    "FileReadObservation",
    "FileWriteAction",
    "FileWriteObservation",
    "LLMMetrics",
    "MessageAction",
    "ModelExchangeObservation",
    "ObservationBase",
    "RecordedAction",
    "RecordedObservation",
    "ScheduleObservation",
    "Source",
    "SuccessObservation",
    "SystemMessageAction",
    "TaskItem",
    "TaskStateObservation",
    "TaskStatus",
    "TaskTrackingAction",
    "TaskTrackingObservation",
    "ThreadlineError",
    "ToolCallMetadata",
    "UserRejectObservation",
    "build_filter",
    "digest",
    "dump_event",
    "event_to_dict",
    "load_event",
    "parse_event",
    "parse_recorded",
    "recorded_events",
    "resolve_event_types",
    "searchable_text",
    "trajectory_items",
]
