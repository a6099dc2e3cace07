"""Agents: what turns a conversation into its next action."""

from __future__ import annotations

from openai import AsyncOpenAI

from server.agents.base import Agent, AgentContext
from server.agents.chat import LiveModel
from server.agents.demo import DemoAgent
from server.agents.llm import LLMAgent
from server.agents.rebuild import ChatCache
from server.agents.rerun import RecordedModel
from server.agents.shell import ShellAgent
from server.settings import Settings

AGENT_NAMES = ("demo", "llm", "shell")


class AgentUnavailable(ValueError):
    pass


class Agents:
    """Makes agents from the settings; holds what they share (the model client)."""

    def __init__(self, settings: Settings) -> None:
        self._settings = settings
        self._client: AsyncOpenAI | None = None
        self.chats = ChatCache()
        """The LLM agent's chats of conversations whose runs ended here."""

    def check(self, name: str) -> None:
        """Raises `AgentUnavailable` saying why ``name`` cannot run here."""
        if name not in AGENT_NAMES:
            raise AgentUnavailable(f"unknown agent {name!r}; known: {', '.join(AGENT_NAMES)}")
        if name == "llm" and not self._settings.llm_base_url:
            raise AgentUnavailable("the llm agent needs THREADLINE_LLM_BASE_URL")

    def make(
        self, name: str, instructions: str | None = None, *, recorded: RecordedModel | None = None
    ) -> Agent:
        """The agent ``name``; with ``recorded``, an LLM agent answered from a recording
        (no model server needed)."""
        if recorded is None:
            self.check(name)
        elif name not in AGENT_NAMES:
            raise AgentUnavailable(f"unknown agent {name!r}; known: {', '.join(AGENT_NAMES)}")
        settings = self._settings
        if name == "llm":
            return LLMAgent(
                recorded or LiveModel(self._model_client()),
                model=(recorded and recorded.model) or settings.llm_model,
                input_cost=settings.llm_input_cost,
                output_cost=settings.llm_output_cost,
                instructions=instructions,
                chats=self.chats,
            )
        if name == "shell":
            return ShellAgent()
        return DemoAgent(pace=settings.demo_pace)

    def _model_client(self) -> AsyncOpenAI:
        if self._client is None:
            self._client = AsyncOpenAI(
                base_url=self._settings.llm_base_url,
                api_key=self._settings.llm_api_key or "unused",
                max_retries=2,
                timeout=120.0,
            )
        return self._client

    async def close(self) -> None:
        if self._client is not None:
            await self._client.close()


__all__ = [
    "AGENT_NAMES",
    "Agent",
    "AgentContext",
    "AgentUnavailable",
    "Agents",
    "DemoAgent",
    "LLMAgent",
    "ShellAgent",
]
