"""EventFilter: the history query shared by search, count, REST and the log backends."""

from __future__ import annotations

from datetime import UTC, datetime

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator, model_validator

from events.base import Source
from events.errors import EventValidationError
from events.serialization import TYPE_BY_KIND

_KINDS_BY_NAME: dict[str, frozenset[str]] = {}
for _kind, _cls in TYPE_BY_KIND.items():
    _bare = _kind.split(":", 1)[1]
    for _name in (_kind, _bare, _cls.openhands_name, _cls.__name__):
        _KINDS_BY_NAME[_name] = _KINDS_BY_NAME.get(_name, frozenset()) | {_kind}


def resolve_event_types(names: tuple[str, ...] | list[str]) -> frozenset[str]:
    """Map type names to stored kinds.

    A name is a qualified kind (``"action:run"``), a bare kind (``"run"``: the action and
    the observation), or an OpenHands class name (``"CmdRunAction"``). Unknown names raise.
    """
    kinds: set[str] = set()
    for name in names:
        try:
            kinds |= _KINDS_BY_NAME[name]
        except KeyError:
            raise EventValidationError("types", f"unknown event type {name!r}") from None
    return frozenset(kinds)


class EventFilter(BaseModel):
    """Which events a history query returns. Every condition must hold.

    - ``query``: case-insensitive substring of the event's text (message, content, args
      and extras values);
    - ``include_types`` / ``exclude_types``: see `resolve_event_types`;
    - ``source``; ``start_date`` / ``end_date``: inclusive bounds on the timestamp;
    - ``exclude_hidden``: drop events marked hidden.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    query: str | None = None
    include_types: tuple[str, ...] = ()
    exclude_types: tuple[str, ...] = ()
    source: Source | None = None
    start_date: datetime | None = None
    end_date: datetime | None = None
    exclude_hidden: bool = False

    @field_validator("include_types", "exclude_types")
    @classmethod
    def _known_types(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        resolve_event_types(names)
        return names

    @field_validator("start_date", "end_date")
    @classmethod
    def _in_utc(cls, value: datetime | None) -> datetime | None:
        """Naive dates are UTC; others are moved to UTC, which must exist (the offset of
        ``0001-01-01T00:00:00+23:59`` takes it before year 1)."""
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        try:
            return value.astimezone(UTC)
        except OverflowError:
            raise ValueError("out of range: in UTC it falls outside years 1 to 9999") from None

    @field_validator("query")
    @classmethod
    def _empty_query_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _ordered_dates(self) -> EventFilter:
        if self.start_date and self.end_date and self.start_date > self.end_date:
            raise ValueError("start_date is after end_date")
        return self

    @property
    def included_kinds(self) -> frozenset[str]:
        return resolve_event_types(self.include_types)

    @property
    def excluded_kinds(self) -> frozenset[str]:
        return resolve_event_types(self.exclude_types)

    @property
    def folded_query(self) -> str | None:
        return self.query.casefold() if self.query else None

    def is_empty(self) -> bool:
        return self == _EMPTY


_EMPTY = EventFilter()


def all_event_kinds() -> list[str]:
    return sorted(TYPE_BY_KIND)


def build_filter(**fields: object) -> EventFilter:
    """Construct an `EventFilter`, raising `EventValidationError` naming the bad field."""
    try:
        return EventFilter.model_validate(fields)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        field = ".".join(str(part) for part in first["loc"]) or "filter"
        cause = first.get("ctx", {}).get("error")
        problem = (
            cause.problem
            if isinstance(cause, EventValidationError)
            else first["msg"].removeprefix("Value error, ")
        )
        raise EventValidationError(field, problem) from None
