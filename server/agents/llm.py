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

import contextlib
from decimal import Decimal

import orjson

from events import (
    ActionBase,
    AgentFinishAction,
    CmdOutputObservation,
    ErrorObservation,
    LLMMetrics,
    MessageAction,
    ModelExchangeObservation,
    ObservationBase,
    ToolCallMetadata,
)
from events.actions import MessageArgs
from events.base import TokenUsage
from events.exchanges import ModelExchangeExtras
from events.observations import ErrorExtras
from server.agents.base import AgentContext, Usage
from server.agents.chat import ChatModel, ChatRequest
from server.agents.completion import Reply, parse_reply
from server.agents.rebuild import ChatCache, ChatRebuild
from server.agents.tools import ToolCallError, action_for
from server.agents.transcript import Transcript
from storage import StorageError

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
        chats: ChatCache | None = None,
    ) -> None:
        self._chat = chat
        self._chats = chats
        self._model = model
        # Decimal, per token: a sum of float prices drifts (0.009000000000000001).
        self._input_cost = Decimal(str(input_cost)) / 1_000_000
        self._output_cost = Decimal(str(output_cost)) / 1_000_000
        self._instructions = instructions
        self._prompt_tokens = 0
        self._completion_tokens = 0
        self._cost = Decimal(0)

    async def run(self, context: AgentContext) -> None:
        chat = await self._chat_so_far(context)
        self._restore_usage(context.usage())
        messages = chat.transcript.copy()
        number = chat.model_calls
        sent = 0
        try:
            await self._converse(context, messages, number, sent)
        finally:
            if self._chats is not None:
                self._chats.put(context.conversation_id, chat)
        # What this run logged joins the kept chat now, so the next run starts from a
        # short tail (cancelled or failed, the next run folds this one's events). A store
        # failing here fails the run's end write too: the run itself is done.
        with contextlib.suppress(StorageError):
            chat.fold(await context.history_from(chat.through + 1, unread=True))

    async def _chat_so_far(self, context: AgentContext) -> ChatRebuild:
        """The chat the log implies: a kept one with what was logged since folded in (a
        bounded read, starting at the kept chat's last event, which must still be there
        as it was), or the whole log folded."""
        kept = self._chats.take(context.conversation_id) if self._chats is not None else None
        fresh = self._fresh()
        if kept is not None and kept.key == fresh.key:
            tail = await context.history_from(kept.through)
            if tail and tail[0] == kept.last:
                kept.fold(tail[1:])
                return kept
        fresh.fold(await context.history())
        return fresh

    def _fresh(self) -> ChatRebuild:
        system = SYSTEM_PROMPT + (f"\n\n{self._instructions}" if self._instructions else "")
        return ChatRebuild(model=self._model, system=system)

    async def _converse(
        self, context: AgentContext, messages: Transcript, number: int, sent: int
    ) -> None:
        while True:
            await context.checkpoint()
            for message in context.take_user_messages():  # said while the agent worked
                messages.add({"role": "user", "content": message.args.content})
            request = ChatRequest(
                messages.request(), number, messages.digests(), sent, messages.request_digest()
            )
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


def _exchange(request: ChatRequest, reply: bytes, model: str) -> ModelExchangeObservation:
    """The hidden record of one model call."""
    extras = ModelExchangeExtras(
        call=request.call,
        request_digest=request.digest,
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
