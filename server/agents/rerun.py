"""Deterministic re-run: an agent answered from a recording instead of its model.

A conversation run by the LLM agent holds a hidden ``model_exchange`` event per model
call (see `server.agents.llm`). A re-run is a new conversation whose agent is the same
agent with a `RecordedModel` in place of the model: a request whose digest the
recording holds gets the recorded reply, so the same trajectory reproduces with no model
server at all. The user's recorded messages come back where they were said: those
before the first model call are the new conversation's first events (see
`server.replays`), later ones are logged just before the model call that followed them,
or when the agent waits for an answer.

A request the recording does not hold is a divergence: the run logs an ``error`` event
(``RERUN_DIVERGED``) saying at which model call, after which event, and which message of
the chat first differs from the recording's, and ends in ``error``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import orjson

from events import (
    ActionBase,
    EventBase,
    MessageAction,
    ModelExchangeObservation,
    ObservationBase,
    TaskItem,
)
from events.exchanges import ModelExchangeExtras
from events.observations import EmptyExtras, ErrorExtras, ErrorObservation, SuccessObservation
from runtime import RuntimeFailure
from server.agents.base import Agent, AgentContext, Usage
from server.agents.chat import ChatRequest

Annotate = Callable[[ObservationBase], ObservationBase]


@dataclass(frozen=True, slots=True)
class RecordedCall:
    source_id: int
    """The ``model_exchange`` event's id in the recorded conversation."""
    exchange: ModelExchangeExtras


class Divergence(Exception):
    def __init__(self, call: int, why: str, recorded_event: int | None) -> None:
        super().__init__(why)
        self.call = call
        self.why = why
        self.recorded_event = recorded_event


class RecordedModel:
    """Answers each request with the recorded reply to the same bytes (identical
    requests get their replies in recorded order); raises `Divergence` otherwise."""

    def __init__(self, calls: list[RecordedCall], *, answered: int = 0) -> None:
        self._calls = calls
        self._replies: dict[str, deque[bytes]] = defaultdict(deque)
        for call in calls[answered:]:  # those before were answered by an earlier run
            reply = orjson.dumps(call.exchange.reply)
            self._replies[call.exchange.request_digest].append(reply)
        self.answered = answered

    @property
    def model(self) -> str:
        """The model the recording asked for (a re-run's requests must name it too)."""
        return self._calls[0].exchange.model if self._calls else ""

    def next_source_id(self) -> int | None:
        """Where the next recorded call is in the recording, if any is left."""
        if self.answered < len(self._calls):
            return self._calls[self.answered].source_id
        return None

    async def complete(self, request: ChatRequest) -> bytes:
        replies = self._replies.get(request.digest)
        if not replies:
            raise Divergence(request.call, self._why(request), self.next_source_id())
        self.answered += 1
        return replies.popleft()

    def _why(self, request: ChatRequest) -> str:
        number = request.call
        if number >= len(self._calls):
            return (
                f"model call {number} is not in the recording, which ends after "
                f"{len(self._calls)} calls"
            )
        recorded = _chat_at(self._calls, number)
        ours = request.message_digests
        for index, (mine, theirs) in enumerate(zip(ours, recorded, strict=False)):
            if theirs is not None and mine != theirs:
                return (
                    f"model call {number} is not in the recording: message {index} of the "
                    f"chat differs from the recorded call's"
                )
        if len(ours) != len(recorded):
            return (
                f"model call {number} is not in the recording: the chat has {len(ours)} "
                f"messages where the recorded call had {len(recorded)}"
            )
        return (
            f"model call {number} is not in the recording: the chat is the same, the "
            "model, tools or settings asked for differ"
        )


def _chat_at(calls: list[RecordedCall], number: int) -> list[str | None]:
    """The recorded chat's message digests at call ``number`` (None: not known)."""
    chat: list[str | None] = []
    for call in calls[: number + 1]:
        exchange = call.exchange
        start = exchange.message_count - len(exchange.new_messages)
        chat = (chat + [None] * start)[:start] + list(exchange.new_messages)
    return chat


@dataclass(frozen=True, slots=True)
class RerunScript:
    calls: list[RecordedCall]
    first: list[MessageAction]
    """The user's messages before the first model call: the re-run's first events."""
    later: list[tuple[int, MessageAction]]
    """The user's later messages, with their ids in the recording."""


def rerun_script(recording: list[EventBase]) -> RerunScript:
    calls = [
        RecordedCall(event.id, event.extras)
        for event in recording
        if isinstance(event, ModelExchangeObservation) and event.id is not None
    ]
    start = calls[0].source_id if calls else None
    first: list[MessageAction] = []
    later: list[tuple[int, MessageAction]] = []
    for event in recording:
        if (
            isinstance(event, MessageAction)
            and event.source == "user"
            and event.id is not None
            and not event.hidden
        ):
            said = event.model_copy(
                update={"id": None, "timestamp": None, "cause": None, "original_id": event.id}
            )
            if start is None or event.id < start:
                first.append(said)
            else:
                later.append((event.id, said))
    return RerunScript(calls, first, later)


Recording = Callable[[], Awaitable[list[EventBase]]]


class RerunAgent:
    """The recording's agent (made by ``make_agent`` around a `RecordedModel`), with the
    user's later messages said where they were said. When the recording has been
    played through, or the re-run left it, a summary joins the record's ``replay``."""

    name = "rerun"

    def __init__(
        self,
        recording: Recording,
        make_agent: Callable[[RecordedModel], Agent],
        settings: dict[str, Any],
    ) -> None:
        self._recording = recording
        self._make_agent = make_agent
        self._settings = settings

    async def run(self, context: AgentContext) -> None:
        script = rerun_script(await self._recording())
        history = await context.history()
        answered = sum(isinstance(event, ModelExchangeObservation) for event in history)
        said = sum(isinstance(event, MessageAction) and event.source == "user" for event in history)
        model = RecordedModel(script.calls, answered=answered)
        messages = deque(script.later[max(0, said - len(script.first)) :])
        agent = self._make_agent(model)
        user = _RecordedUser(context, model, messages)
        try:
            while True:
                await agent.run(user)
                if not messages or model.next_source_id() is None:
                    break
                user.said.append(await user.say_recorded(messages.popleft()[1]))
        except Divergence as exc:
            await self._diverged(context, exc)
        await self._summarize(
            context,
            f"re-run finished: {model.answered} of {len(script.calls)} model calls answered "
            "from the recording",
            {"calls": len(script.calls), "answered": model.answered},
        )

    async def _diverged(self, context: AgentContext, exc: Divergence) -> None:
        history = await context.history()
        last = history[-1].id if history else None
        where = f"after event {last}" if last is not None else "at the start"
        details = {"call": exc.call, "after_event": last, "recorded_event": exc.recorded_event}
        text = f"the re-run left the recording {where}: {exc.why}"
        await context.log(
            ErrorObservation(
                source="environment",
                content=text,
                extras=ErrorExtras.model_validate({"error_id": "RERUN_DIVERGED", **details}),
            ),
            settings=self._finished({"diverged": details}),
        )
        raise RuntimeFailure(text)

    async def _summarize(self, context: AgentContext, text: str, figures: dict[str, int]) -> None:
        summary = self._finished(figures)
        await context.log(
            SuccessObservation(
                source="environment",
                content=text,
                extras=EmptyExtras.model_validate({"replay": summary["replay"]}),
            ),
            settings=summary,
        )

    def _finished(self, figures: dict[str, Any]) -> dict[str, Any]:
        replay = {**self._settings.get("replay", {}), "complete": True, **figures}
        return {**self._settings, "replay": replay}


class _RecordedUser:
    """The agent's context, with the user's recorded messages coming in where they were
    said: before the recorded model call they preceded (logged at the checkpoint the
    agent passes before each call), or as the answer the agent waits for."""

    def __init__(
        self,
        context: AgentContext,
        model: RecordedModel,
        messages: deque[tuple[int, MessageAction]],
    ) -> None:
        self._context = context
        self._model = model
        self._messages = messages
        self.said: list[MessageAction] = []
        self.conversation_id = context.conversation_id

    async def say_recorded(self, message: MessageAction) -> MessageAction:
        await self._context.log(message)
        return message

    async def checkpoint(self) -> None:
        await self._context.checkpoint()
        upcoming = self._model.next_source_id()
        while self._messages and upcoming is not None and self._messages[0][0] < upcoming:
            self.said.append(await self.say_recorded(self._messages.popleft()[1]))

    def take_user_messages(self) -> list[MessageAction]:
        said, self.said = self.said, []
        return [*said, *self._context.take_user_messages()]

    async def wait_for_user_message(self) -> MessageAction:
        if self.said:
            return self.said.pop(0)
        if self._messages:
            return await self.say_recorded(self._messages.popleft()[1])
        return await self._context.wait_for_user_message()

    async def history(self) -> list[EventBase]:
        return await self._context.history()

    async def history_from(self, start_id: int, *, unread: bool = False) -> list[EventBase]:
        return await self._context.history_from(start_id, unread=unread)

    async def act(
        self, action: ActionBase, *, annotate: Annotate | None = None
    ) -> ObservationBase | None:
        return await self._context.act(action, annotate=annotate)

    def usage(self) -> Usage:
        return self._context.usage()

    async def log(self, event: EventBase, *, settings: dict[str, Any] | None = None) -> None:
        await self._context.log(event, settings=settings)

    async def say(self, text: str, *, wait_for_response: bool = False) -> None:
        await self._context.say(text, wait_for_response=wait_for_response)

    async def plan(self, tasks: list[TaskItem]) -> None:
        await self._context.plan(tasks)
