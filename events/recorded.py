"""Events kept exactly as a recording wrote them.

A session recorded by another OpenHands version may hold kinds, fields and values this
one does not declare: an ``init`` agent state, an ``add_task`` action, ``exit_code``
beside ``metadata``, a top-level ``success``. `RecordedAction` / `RecordedObservation`
validate the envelope every V0 event shares (``id``, ``timestamp``, ``source``,
``message``, ``cause``, ``tool_call_metadata``, ``llm_metrics``, and an object for
``args`` / ``extras``) and keep everything else as given; they serialize back to the
keys they were given and nothing more.

`parse_recorded` reads one recorded event. `load_event` reads a stored one: the typed
model when it fits, else the recorded form, so a log holding imported history never
fails a reader.
"""

from __future__ import annotations

from typing import Any, ClassVar

from pydantic import ConfigDict, Field, ValidationError

from events.actions import ActionBase
from events.base import EventBase, OpenModel
from events.errors import EventValidationError
from events.observations import ObservationBase
from events.serialization import WireData, category_of, parse_event, translate, wire_document

_KEEP_EVERYTHING = ConfigDict(frozen=True, strict=True, extra="allow")


class RecordedAction(ActionBase):
    """An action of any kind, its ``args`` and top-level keys kept as recorded."""

    model_config = _KEEP_EVERYTHING
    openhands_name: ClassVar[str] = "Action"
    keeps_recorded_shape: ClassVar[bool] = True

    action: str
    args: OpenModel = Field(default_factory=OpenModel)

    @property
    def hidden(self) -> bool:
        return _hidden(self.args)


class RecordedObservation(ObservationBase):
    """An observation of any kind, its ``extras`` and top-level keys kept as recorded."""

    model_config = _KEEP_EVERYTHING
    openhands_name: ClassVar[str] = "Observation"
    keeps_recorded_shape: ClassVar[bool] = True

    observation: str
    content: str = ""
    extras: OpenModel = Field(default_factory=OpenModel)

    @property
    def hidden(self) -> bool:
        return _hidden(self.extras)

    def default_message(self) -> str:
        return ""


def parse_recorded(data: WireData) -> EventBase:
    """One recorded event, its envelope validated and the rest kept as given.
    Raises `EventValidationError` naming the field."""
    document = wire_document(data)
    model = RecordedAction if category_of(document) == "action" else RecordedObservation
    try:
        return model.model_validate(document)
    except ValidationError as exc:
        raise translate(exc) from None


def load_event(data: WireData) -> EventBase:
    """A stored event: its typed model when it fits one, else as recorded."""
    try:
        return parse_event(data)
    except EventValidationError:
        return parse_recorded(data)


def _hidden(block: OpenModel) -> bool:
    value: Any = (block.model_extra or {}).get("hidden", False)
    return value is True
