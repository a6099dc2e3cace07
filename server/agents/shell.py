"""The shell agent: runs the user's last message as one command in the sandbox and
finishes with its exit code and output (a ``shell`` task is a conversation with it)."""

from __future__ import annotations

from events import AgentFinishAction, CmdOutputObservation, CmdRunAction, MessageAction
from events.actions import FinishArgs, RunArgs
from server.agents.base import AgentContext


class ShellAgent:
    name = "shell"

    async def run(self, context: AgentContext) -> None:
        history = await context.history()
        commands = [
            event.args.content
            for event in history
            if isinstance(event, MessageAction) and event.source == "user"
        ]
        if not commands:
            await context.act(_finish("there was no command to run", None, ""))
            return
        observation = await context.act(
            CmdRunAction(source="agent", args=RunArgs(command=commands[-1]))
        )
        if isinstance(observation, CmdOutputObservation):
            exit_code = observation.exit_code
            await context.act(_finish(f"exit code {exit_code}", exit_code, observation.content))
        else:
            content = observation.content if observation is not None else ""
            await context.act(_finish("the command could not run", None, content))


def _finish(thought: str, exit_code: int | None, output: str) -> AgentFinishAction:
    arguments = FinishArgs(
        final_thought=thought, outputs={"exit_code": exit_code, "output": output}
    )
    return AgentFinishAction(source="agent", args=arguments)
