"""The wire format: one discriminated union, orjson for bytes in and out.

``parse_event`` accepts bytes, str or a mapping in the OpenHands V0 shape and returns a
typed event or raises `EventValidationError` naming the field. ``event_to_dict`` /
``dump_event`` give that shape back; top-level keys whose value is ``None`` are omitted,
as OpenHands' ``event_to_dict`` does.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Union

import orjson
from pydantic import Discriminator, Tag, TypeAdapter, ValidationError

from events.actions import ACTION_TYPES, ActionBase
from events.automation import AUTOMATION_OBSERVATION_TYPES
from events.base import OMITTED_WHEN_NONE, EventBase
from events.depth import MAX_JSON_DEPTH, depth_field, too_deep
from events.errors import EventValidationError
from events.exchanges import ModelExchangeObservation
from events.observations import OBSERVATION_TYPES, ObservationBase
from events.other_actions import OTHER_ACTION_TYPES
from events.other_observations import OTHER_OBSERVATION_TYPES


def _kind_of(cls: type[EventBase]) -> str:
    return f"{cls.category}:{cls.model_fields[cls.category].default}"


EVENT_TYPES: tuple[type[EventBase], ...] = (
    *ACTION_TYPES,
    *OTHER_ACTION_TYPES,
    *OBSERVATION_TYPES,
    *OTHER_OBSERVATION_TYPES,
    ModelExchangeObservation,
    *AUTOMATION_OBSERVATION_TYPES,
)
TYPE_BY_KIND: dict[str, type[EventBase]] = {_kind_of(cls): cls for cls in EVENT_TYPES}


def _discriminate(value: Any) -> str | None:
    if isinstance(value, EventBase):
        return value.kind
    if isinstance(value, Mapping):
        for category in ("action", "observation"):
            if category in value:
                return f"{category}:{value[category]}"
    return None


Event = Annotated[  # type: ignore[valid-type]
    Union[tuple(Annotated[cls, Tag(kind)] for kind, cls in TYPE_BY_KIND.items())],  # noqa: UP007
    Discriminator(_discriminate),
]
"""Any action or observation; pydantic picks the model by the ``action``/``observation`` key."""

_ADAPTER: TypeAdapter[EventBase] = TypeAdapter(Event)  # type: ignore[arg-type]


WireData = bytes | bytearray | memoryview | str | Mapping[str, Any]


def parse_event(data: WireData) -> EventBase:
    """Validate one event in wire shape. Raises `EventValidationError`, nothing else."""
    document = wire_document(data)
    _check_kind(document)
    try:
        return _ADAPTER.validate_python(document)
    except ValidationError as exc:
        raise translate(exc) from None


def wire_document(data: WireData) -> Mapping[str, Any]:
    """The JSON object ``data`` holds. Raises `EventValidationError`."""
    if isinstance(data, Mapping):
        document: Any = data
    else:
        try:
            document = orjson.loads(data)
        except orjson.JSONDecodeError as exc:
            raise EventValidationError("", f"not valid JSON: {exc}") from None
    if not isinstance(document, Mapping):
        raise EventValidationError("", "an event must be a JSON object")
    if (path := too_deep(document)) is not None:
        raise EventValidationError(depth_field(path), f"nested deeper than {MAX_JSON_DEPTH} levels")
    return document


def event_to_dict(event: EventBase) -> dict[str, Any]:
    """The OpenHands V0 wire dict of an event (a recorded one: the keys it was given)."""
    wire = event.model_dump(mode="json", exclude_unset=event.keeps_recorded_shape)
    # Dropped after dumping rather than passed as ``exclude``: an exclusion set makes
    # pydantic's serializer twice as slow, and this runs for every append.
    for key in OMITTED_WHEN_NONE:
        if key in wire and wire[key] is None:
            del wire[key]
    return wire


def dump_event(event: EventBase) -> bytes:
    """The OpenHands V0 wire bytes of an event."""
    return orjson.dumps(event_to_dict(event))


def category_of(document: Mapping[str, Any]) -> str:
    """``"action"`` or ``"observation"``: which key the event has, holding a string."""
    has_action, has_observation = "action" in document, "observation" in document
    if has_action and has_observation:
        raise EventValidationError("", "an event has either 'action' or 'observation', not both")
    if not (has_action or has_observation):
        raise EventValidationError("action", "an event needs an 'action' or 'observation' key")
    category = "action" if has_action else "observation"
    kind = document[category]
    if not isinstance(kind, str):
        raise EventValidationError(category, f"must be a string, got {type(kind).__name__}")
    if not kind:
        raise EventValidationError(category, "must not be empty")
    return category


def _check_kind(document: Mapping[str, Any]) -> None:
    category = category_of(document)
    kind = document[category]
    if f"{category}:{kind}" not in TYPE_BY_KIND:
        known = sorted(k.split(":", 1)[1] for k in TYPE_BY_KIND if k.startswith(category))
        raise EventValidationError(
            category, f"unknown {category} kind {kind!r}; known: {', '.join(known)}"
        )


def translate(exc: ValidationError) -> EventValidationError:
    """A pydantic error as `EventValidationError` naming the first field at fault."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    location = first["loc"]
    if location and isinstance(location[0], str) and location[0] in TYPE_BY_KIND:
        location = location[1:]  # drop the union tag pydantic puts in front
    field = ""
    for part in location:
        field += f"[{part}]" if isinstance(part, int) else (f".{part}" if field else str(part))
    problem = {"missing": "field required", "extra_forbidden": "unknown field"}.get(
        first["type"], first["msg"]
    )
    if len(errors) > 1:
        problem += f" (and {len(errors) - 1} more problem{'s' if len(errors) > 2 else ''})"
    return EventValidationError(field, problem)


def is_action(event: EventBase) -> bool:
    return isinstance(event, ActionBase)


def is_observation(event: EventBase) -> bool:
    return isinstance(event, ObservationBase)
