"""Replay: a recording's user and agent actions, executed again in a fresh sandbox.

As OpenHands' replay does, every action the recorded user or agent took is acted again,
in order, through the run like any agent's (so the gate, the control flags, pause, stop
and the timeouts apply, and every step is logged and streamed as it happens). What is
not re-executed: events of the environment, hidden events, and bookkeeping actions
(system prompts, control requests, recalls, condensations). A recorded command's own
``timeout`` is dropped: the server's command timeout applies; recorded ``llm_metrics``
are dropped: a replay spends nothing.

Each new observation carries a ``replay`` extra: the recorded event it answers to, and
whether it matched (same kind, same content, same exit code for a command); where it did
not, the recorded observation is kept beside the new one. A step is a replayed action
that produced an observation. When every action has been replayed the agent logs a
summary (``success``, extras ``replay``) and writes it into the record's settings in the
same write: the conversation's ``replay`` field says how many steps matched. A replay
stopped midway continues, on its next run, after the last action it logged.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from events import ActionBase, EventBase, ObservationBase, event_to_dict
from events.observations import EmptyExtras, SuccessObservation
from server.agents.base import AgentContext

NOT_REPLAYED = frozenset(
    {"system", "change_agent_state", "recall", "condensation", "condensation_request", "null"}
)
"""Action kinds that are the recording agent's or server's bookkeeping, not its work."""
NOT_AN_OUTCOME = frozenset({"agent_state_changed", "recall", "null", "model_exchange"})
"""Observation kinds that never answer an action's work."""
LISTED_DIFFERENCES = 50

Recording = Callable[[], Awaitable[list[EventBase]]]
"""Loads the recorded events (with their ids in the recording), oldest first."""


@dataclass(frozen=True, slots=True)
class ReplayStep:
    recorded_id: int
    action: ActionBase
    """The action to take again, cleaned of what the log and the server assign."""
    outcome: dict[str, Any] | None
    """The recorded observation it caused, as recorded."""


def replay_steps(recording: list[EventBase]) -> list[ReplayStep]:
    outcomes: dict[int, dict[str, Any]] = {}
    for event in recording:
        if (
            isinstance(event, ObservationBase)
            and event.cause is not None
            and event.observation not in NOT_AN_OUTCOME
        ):
            outcomes.setdefault(event.cause, event_to_dict(event))
    steps = []
    for event in recording:
        if (
            not isinstance(event, ActionBase)
            or event.id is None
            or event.source not in ("user", "agent")
            or event.hidden
            or event.action in NOT_REPLAYED
        ):
            continue
        action = event.model_copy(
            update={
                "id": None,
                "timestamp": None,
                "cause": None,
                "llm_metrics": None,
                "timeout": None,
                "original_id": event.id,
                "original_cause": None,
            }
        )
        steps.append(ReplayStep(event.id, action, outcomes.get(event.id)))
    return steps


def same_outcome(recorded: dict[str, Any] | None, new: dict[str, Any]) -> bool:
    """Same kind, same content (trailing whitespace aside), and for a command the same
    exit code."""
    if recorded is None or recorded.get("observation") != new.get("observation"):
        return False
    if str(recorded.get("content", "")).rstrip() != str(new.get("content", "")).rstrip():
        return False
    if new.get("observation") == "run":
        return _exit_code(recorded) == _exit_code(new)
    return True


def _exit_code(document: dict[str, Any]) -> object:
    extras = document.get("extras") or {}
    metadata = extras.get("metadata") or {}
    return metadata.get("exit_code", extras.get("exit_code"))


class ReplayAgent:
    name = "replay"

    def __init__(self, recording: Recording, settings: dict[str, Any]) -> None:
        self._recording = recording
        self._settings = settings
        """The conversation record's settings; the summary joins them when done."""

    async def run(self, context: AgentContext) -> None:
        steps = replay_steps(await self._recording())
        history = await context.history()
        done = {
            event.original_id
            for event in history
            if isinstance(event, ActionBase) and event.original_id is not None
        }
        for step in steps:
            if step.recorded_id in done:
                continue
            await context.act(step.action, annotate=_compare_with(step))
        await self._summarize(context, len(steps))

    async def _summarize(self, context: AgentContext, actions: int) -> None:
        steps = matched = 0
        differed: list[int] = []
        for event in await context.history():
            if isinstance(event, ObservationBase):
                replay = (event.extras.model_extra or {}).get("replay")
                if isinstance(replay, dict) and "matched" in replay:
                    steps += 1
                    if replay["matched"]:
                        matched += 1
                    elif event.id is not None and len(differed) < LISTED_DIFFERENCES:
                        differed.append(event.id)
        summary = {
            **self._settings.get("replay", {}),
            "complete": True,
            "actions": actions,
            "steps": steps,
            "matched": matched,
            "differed": steps - matched,
            "differed_events": differed,
        }
        text = f"replay finished: {matched} of {steps} steps matched the recording"
        if differed:
            text += f"; {steps - matched} differed (events {', '.join(map(str, differed))})"
        await context.log(
            SuccessObservation(
                source="environment",
                content=text,
                extras=EmptyExtras.model_validate({"replay": summary}),
            ),
            settings={**self._settings, "replay": summary},
        )


def _compare_with(step: ReplayStep) -> Callable[[ObservationBase], ObservationBase]:
    def annotate(observation: ObservationBase) -> ObservationBase:
        new = event_to_dict(observation)
        matched = same_outcome(step.outcome, new)
        replay: dict[str, Any] = {"recorded_action": step.recorded_id, "matched": matched}
        if step.outcome is not None:
            replay["recorded_observation"] = step.outcome.get("id")
        if not matched:
            replay["recorded"] = step.outcome
        extras = observation.extras.model_copy(update={"replay": replay})
        return observation.model_copy(update={"extras": extras})

    return annotate
