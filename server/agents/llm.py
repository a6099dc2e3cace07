"""The LLM agent: an OpenAI-compatible chat-completions model with tools.

Each step asks the model for the next move given the conversation so far; every tool
call becomes an action (with OpenHands' ``tool_call_metadata``), its observation goes
back as the tool's answer. A reply without tool calls is a message to the user, and the
agent waits for the answer. Token usage is priced with the configured rates and carried
on every action as ``llm_metrics``; the controller's budget flag reads it.

Every model call is logged as a hidden ``model_exchange`` event (the request's digest,
the digests of the messages it added, the reply as sent), so a re-run can answer the
same requests from the log instead of the model (`server.agents.rerun`).
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

import orjson

from events import (
    ActionBase,
    AgentFinishAction,
    CmdOutputObservation,
    ErrorObservation,
    EventBase,
    LLMMetrics,
    MessageAction,
    ModelExchangeObservation,
    ObservationBase,
    ToolCallMetadata,
)
from events.actions import MessageArgs
from events.base import TokenUsage
from events.exchanges import ModelExchangeExtras, digest
from events.observations import ErrorExtras
from server.agents.base import AgentContext, Usage
from server.agents.chat import ChatModel, ChatRequest
from server.agents.completion import Reply, parse_reply
from server.agents.tools import TOOLS, ToolCallError, action_for
from server.agents.transcript import Transcript

SYSTEM_PROMPT = (
    "You are a software agent working in a sandboxed workspace. Plan with task_tracker, "
    "act with execute_bash and str_replace_editor, keep the plan up to date, and call "
    "finish when the task is done. Ask the user only when you cannot go on."
)


class LLMAgent:
    name = "llm"

    def __init__(
        self,
        chat: ChatModel,
        *,
        model: str,
        input_cost: float = 0.0,
        output_cost: float = 0.0,
        instructions: str | None = None,
    ) -> None:
        self._chat = chat
        self._model = model
        # Decimal, per token: a sum of float prices drifts (0.009000000000000001).
        self._input_cost = Decimal(str(input_cost)) / 1_000_000
        self._output_cost = Decimal(str(output_cost)) / 1_000_000
        self._instructions = instructions
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._cost = Decimal(0)

    async def run(self, context: AgentContext) -> None:
        history = await context.history()
        self._restore_usage(context.usage())
        messages = self._transcript(history)
        number = sum(isinstance(event, ModelExchangeObservation) for event in history)
        sent = 0
        while True:
            await context.checkpoint()
            for message in context.take_user_messages():  # said while the agent worked
                messages.add({"role": "user", "content": message.args.content})
            request = ChatRequest(messages.request_body(), number, messages.digests(), sent)
            answer_bytes = await self._chat.complete(request)
            reply = parse_reply(answer_bytes)
            await context.log(_exchange(request, answer_bytes, self._model))
            number, sent = number + 1, len(messages)
            metrics = self._account(reply)
            calls = reply.tool_calls
            if not calls:
                text = reply.content or ""
                await context.act(
                    MessageAction(
                        source="agent",
                        llm_metrics=metrics,
                        args=MessageArgs(content=text, wait_for_response=True),
                    )
                )
                messages.add({"role": "assistant", "content": text})
                answer = await context.wait_for_user_message()
                messages.add({"role": "user", "content": answer.args.content})
                continue
            messages.add(
                {
                    "role": "assistant",
                    "content": reply.content,
                    "tool_calls": [call.as_message_part() for call in calls],
                }
            )
            finished = False
            for call in calls:
                metadata = ToolCallMetadata(
                    function_name=call.name,
                    tool_call_id=call.id,
                    model_response={"id": reply.id, "model": reply.model},
                    total_calls_in_response=len(calls),
                )
                try:
                    action = action_for(call.name, call.arguments, metadata)
                except ToolCallError as exc:
                    await context.log(
                        ErrorObservation(
                            source="agent",
                            content=str(exc),
                            tool_call_metadata=metadata,
                            extras=ErrorExtras(error_id="BAD_TOOL_CALL"),
                        )
                    )
                    messages.add({"role": "tool", "tool_call_id": call.id, "content": str(exc)})
                    continue
                action = action.model_copy(update={"llm_metrics": metrics})
                observation = await context.act(action)
                messages.add(
                    {
                        "role": "tool",
                        "tool_call_id": call.id,
                        "content": _tool_answer(action, observation),
                    }
                )
                finished = finished or isinstance(action, AgentFinishAction)
            if finished:
                return

    def _account(self, reply: Reply) -> LLMMetrics:
        self._prompt_tokens += reply.prompt_tokens
        self._completion_tokens += reply.completion_tokens
        self._cost += (
            reply.prompt_tokens * self._input_cost + reply.completion_tokens * self._output_cost
        )
        return LLMMetrics(
            accumulated_cost=float(self._cost),
            accumulated_token_usage=TokenUsage(
                model=self._model,
                prompt_tokens=self._prompt_tokens,
                completion_tokens=self._completion_tokens,
                response_id=reply.id,
            ),
        )

    def _restore_usage(self, usage: Usage) -> None:
        """A later run of the same conversation goes on counting from where the server's
        record says it was (not from the log, which may hold imported figures)."""
        self._cost = Decimal(str(usage.cost))
        self._prompt_tokens, self._completion_tokens = usage.prompt_tokens, usage.completion_tokens

    def _transcript(self, history: Sequence[EventBase]) -> Transcript:
        """The chat so far, rebuilt from the log: user and agent messages, tool calls and
        their answers."""
        system = SYSTEM_PROMPT + (f"\n\n{self._instructions}" if self._instructions else "")
        messages = Transcript(model=self._model, tools=TOOLS)
        messages.add({"role": "system", "content": system})
        answered: dict[str, str] = {}
        for event in history:
            metadata = event.tool_call_metadata
            if isinstance(event, ObservationBase) and metadata is not None:
                answered[metadata.tool_call_id] = event.content
        pending: list[dict[str, Any]] = []
        for event in history:
            metadata = event.tool_call_metadata
            if isinstance(event, MessageAction) and metadata is None:
                role = "user" if event.source == "user" else "assistant"
                messages.add({"role": role, "content": event.args.content})
            elif isinstance(event, ActionBase) and metadata is not None:
                call = {
                    "id": metadata.tool_call_id,
                    "type": "function",
                    "function": {
                        "name": metadata.function_name,
                        "arguments": orjson.dumps(event.args.model_dump()).decode(),
                    },
                }
                pending.append(call)
                if len(pending) == metadata.total_calls_in_response:
                    messages.add({"role": "assistant", "content": None, "tool_calls": pending})
                    for done in pending:
                        answer = answered.get(done["id"], "(no result was recorded)")
                        messages.add(
                            {"role": "tool", "tool_call_id": done["id"], "content": answer}
                        )
                    pending = []
        return messages


def _exchange(request: ChatRequest, reply: bytes, model: str) -> ModelExchangeObservation:
    """The hidden record of one model call."""
    extras = ModelExchangeExtras(
        call=request.call,
        request_digest=digest(request.body),
        new_messages=request.message_digests[request.first_new :],
        message_count=len(request.message_digests),
        model=model,
        reply=orjson.loads(reply),
    )
    return ModelExchangeObservation(source="agent", extras=extras)


def _tool_answer(action: ActionBase, observation: ObservationBase | None) -> str:
    """What the model is told a tool call did."""
    if observation is None:
        return "done" if isinstance(action, AgentFinishAction) else "ok"
    if isinstance(observation, CmdOutputObservation):
        return observation.content + observation.extras.metadata.suffix
    return observation.content
