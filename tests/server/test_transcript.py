"""The LLM agent's transcript: encoded once, sent as one valid request body."""

from __future__ import annotations

import orjson

from server.agents.tools import TOOLS
from server.agents.transcript import Transcript


def test_the_request_body_is_the_whole_chat() -> None:
    transcript = Transcript(model="m", tools=TOOLS)
    assert orjson.loads(transcript.request_body())["messages"] == []
    transcript.add({"role": "system", "content": "be brief"})
    transcript.add({"role": "user", "content": 'quotes " and unicode é'})
    body = orjson.loads(transcript.request_body())
    assert body == {
        "model": "m",
        "tools": TOOLS,
        "tool_choice": "auto",
        "messages": [
            {"role": "system", "content": "be brief"},
            {"role": "user", "content": 'quotes " and unicode é'},
        ],
    }
    assert len(transcript) == 2
    assert transcript.messages() == body["messages"]
