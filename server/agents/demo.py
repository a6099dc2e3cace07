"""The demo agent: no model needed, real work in the workspace.

It plans three tasks, runs real shell commands, writes a report file, ticks the plan off
as steps finish, answers user messages that arrive meanwhile, and finishes. A follow-up
message after it finished gets an answer in a short second run.
"""

from __future__ import annotations

import asyncio
import shlex

from events import (
    AgentFinishAction,
    CmdOutputObservation,
    CmdRunAction,
    EventBase,
    FileWriteAction,
    MessageAction,
    TaskItem,
)
from events.actions import FinishArgs, RunArgs, WriteArgs
from server.agents.base import AgentContext

STEPS: list[tuple[str, str, str]] = [
    ("inspect", "Inspect the workspace", "pwd && ls -la"),
    (
        "toolchain",
        "Check the toolchain",
        "uname -srm && (git --version; sh -c 'echo shell: $0') 2>&1",
    ),
    ("report", "Write a report", "wc -c REPORT.md && head -n 5 REPORT.md"),
]


class DemoAgent:
    name = "demo"

    def __init__(self, *, pace: float = 0.0) -> None:
        self.pace = pace

    async def run(self, context: AgentContext) -> None:
        history = await context.history()
        if any(isinstance(event, AgentFinishAction) for event in history):
            await self._follow_up(context, history)
            return
        request = next(
            (
                e.args.content
                for e in history
                if isinstance(e, MessageAction) and e.source == "user"
            ),
            "",
        )
        await context.say(
            f"I'm the demo agent. You asked: {request!r}. I'll look around the workspace "
            "and report back."
            if request
            else "I'm the demo agent. Let me look around."
        )
        tasks = [TaskItem(id=key, title=title) for key, title, _ in STEPS]
        await context.plan(tasks)
        outputs: dict[str, str] = {}
        for index, (key, _, command) in enumerate(STEPS):
            await asyncio.sleep(self.pace)
            await self._answer_pending(context)
            tasks[index] = tasks[index].model_copy(update={"status": "in_progress"})
            await context.plan(tasks)
            if key == "report":
                await context.act(
                    FileWriteAction(
                        source="agent",
                        args=WriteArgs(path="REPORT.md", content=_report(request, outputs)),
                    )
                )
            observation = await context.act(
                CmdRunAction(source="agent", args=RunArgs(command=command))
            )
            result = observation.content if isinstance(observation, CmdOutputObservation) else ""
            outputs[key] = result.strip()
            notes = (
                "ok"
                if isinstance(observation, CmdOutputObservation) and observation.success
                else "failed"
            )
            tasks[index] = tasks[index].model_copy(update={"status": "done", "notes": notes})
            await context.plan(tasks)
        await asyncio.sleep(self.pace)
        await self._answer_pending(context)
        await context.say("All three steps are done; REPORT.md in the workspace has the details.")
        await context.act(_finish("Report written to REPORT.md."))

    async def _answer_pending(self, context: AgentContext) -> None:
        for message in context.take_user_messages():
            await context.say(f"Noted: {message.args.content!r}. I'll take it into account.")

    async def _follow_up(self, context: AgentContext, history: list[EventBase]) -> None:
        questions = [e for e in history if isinstance(e, MessageAction) and e.source == "user"]
        question = questions[-1].args.content if questions else ""
        await context.plan(
            [TaskItem(id="answer", title="Answer the follow-up", status="in_progress")]
        )
        observation = await context.act(
            CmdRunAction(
                source="agent", args=RunArgs(command=f"printf %s {shlex.quote(question)} | wc -w")
            )
        )
        words = observation.content.strip() if observation is not None else "?"
        await context.say(f"You said {question!r} ({words} words). The report is in REPORT.md.")
        await context.plan([TaskItem(id="answer", title="Answer the follow-up", status="done")])
        await context.act(
            AgentFinishAction(source="agent", args=FinishArgs(final_thought="Answered."))
        )


def _user_messages(history: list[EventBase]) -> list[str]:
    return [e.args.content for e in history if isinstance(e, MessageAction) and e.source == "user"]


def _run(command: str) -> CmdRunAction:
    return CmdRunAction(source="agent", args=RunArgs(command=command))


def _finish(thought: str) -> AgentFinishAction:
    return AgentFinishAction(source="agent", args=FinishArgs(final_thought=thought))


def _report(request: str, outputs: dict[str, str]) -> str:
    lines = ["# Workspace report", "", f"Request: {request or '(none)'}", ""]
    for key, title, command in STEPS[:-1]:
        lines += [f"## {title}", "", f"$ {command}", "", "```", outputs.get(key, ""), "```", ""]
    return "\n".join(lines)
