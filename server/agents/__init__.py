"""Agents: what turns a conversation into its next action."""

from server.agents.base import Agent, AgentContext
from server.agents.demo import DemoAgent

AGENTS: dict[str, type] = {"demo": DemoAgent}


def make_agent(name: str) -> Agent:
    """Raises `KeyError` for an unknown agent name."""
    return AGENTS[name]()  # type: ignore[no-any-return]


__all__ = ["AGENTS", "Agent", "AgentContext", "DemoAgent", "make_agent"]
