"""Agents: what turns a conversation into its next action."""

from collections.abc import Callable

from server.agents.base import Agent, AgentContext
from server.agents.demo import DemoAgent
from server.settings import Settings

AGENTS: dict[str, Callable[[Settings], Agent]] = {
    "demo": lambda settings: DemoAgent(pace=settings.demo_pace),
}


def make_agent(name: str, settings: Settings) -> Agent:
    """Raises `KeyError` for an unknown agent name."""
    return AGENTS[name](settings)


__all__ = ["AGENTS", "Agent", "AgentContext", "DemoAgent", "make_agent"]
