"""Golden fixtures in the exact OpenHands V0 shape parse and serialize back unchanged."""

from __future__ import annotations

import json
from pathlib import Path

import orjson
import pytest

from events import TYPE_BY_KIND, dump_event, event_to_dict, parse_event

FIXTURES = Path(__file__).parent.parent / "fixtures" / "openhands_v0"
CORE = sorted(FIXTURES.glob("*.json"))
RECORDED_EXTRAS = sorted((FIXTURES / "extra").glob("*.json"))


def test_every_core_kind_has_a_fixture() -> None:
    required = {
        "action_run", "action_read", "action_write", "action_edit", "action_message",
        "action_think", "action_finish", "action_task_tracking", "action_system",
        "action_reject", "action_change_agent_state", "observation_run", "observation_read",
        "observation_write", "observation_edit", "observation_error", "observation_success",
        "observation_agent_state_changed", "observation_task_tracking",
        "observation_user_rejected",
    }  # fmt: skip
    assert required <= {path.stem for path in CORE}


@pytest.mark.parametrize("path", CORE + RECORDED_EXTRAS, ids=lambda path: path.stem)
def test_fixture_round_trips(path: Path) -> None:
    document = json.loads(path.read_text())
    event = parse_event(document)
    assert event_to_dict(event) == document
    assert orjson.loads(dump_event(event)) == document
    assert parse_event(path.read_bytes()) == event


@pytest.mark.parametrize("path", CORE, ids=lambda path: path.stem)
def test_fixture_parses_to_its_own_class(path: Path) -> None:
    document = json.loads(path.read_text())
    category = "action" if "action" in document else "observation"
    event = parse_event(document)
    assert type(event) is TYPE_BY_KIND[f"{category}:{document[category]}"]
    assert event.kind == f"{category}:{document[category]}"
