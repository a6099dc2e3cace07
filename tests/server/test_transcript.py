"""The LLM agent's transcript: encoded once, sent as one valid request body."""

from __future__ import annotations

import orjson
import pytest
from openai import AsyncOpenAI

from server.agents.chat import ChatRequest, LiveModel
from server.agents.completion import MalformedReply, parse_reply
from server.agents.tools import TOOLS
from server.agents.transcript import Transcript
from tests.fakes.model_server import ScriptedModel, serving, tool


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


def test_replies_are_read_from_their_json() -> None:
    body = orjson.dumps(
        {
            "id": "r1",
            "model": "m",
            "choices": [
                {
                    "message": {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [
                            {
                                "id": "c1",
                                "type": "function",
                                "function": {"name": "think", "arguments": "{}"},
                            },
                            {"id": "c2", "type": "custom", "custom": {"name": "x", "input": ""}},
                        ],
                    }
                }
            ],
            "usage": {"prompt_tokens": 10, "completion_tokens": 2},
        }
    )
    reply = parse_reply(body)
    assert [(call.id, call.name) for call in reply.tool_calls] == [("c1", "think")]
    assert (reply.prompt_tokens, reply.completion_tokens, reply.content) == (10, 2, None)


@pytest.mark.parametrize("body", [b"not json", b"{}", b'{"choices": []}', b'{"choices": [{}]}'])
def test_a_malformed_reply_says_so(body: bytes) -> None:
    with pytest.raises(MalformedReply, match="not a chat completion"):
        parse_reply(body)


async def test_a_retried_model_call_sends_the_same_bytes() -> None:
    """The body is streamed from the transcript in pieces with its length: a retry (the
    model answered 500) sends it again whole, and the transcript grows on afterwards."""
    model = ScriptedModel([tool("finish", message="done")], failures=1)
    transcript = Transcript(model="m", tools=TOOLS)
    transcript.add({"role": "user", "content": "x" * 600_000})  # several pieces
    async with serving(model) as base_url:
        client = AsyncOpenAI(base_url=base_url, api_key="unused", max_retries=1)
        request = ChatRequest(
            transcript.request(), 0, transcript.digests(), 0, transcript.request_digest()
        )
        reply = parse_reply(await LiveModel(client).complete(request))
        await client.close()
    assert [call.name for call in reply.tool_calls] == ["finish"]
    assert len(model.received) == 2
    for length, encoding, body in model.received:
        assert body == transcript.request_body()
        assert (length, encoding) == (str(len(body)), None)
    transcript.add({"role": "assistant", "content": "grows on"})
    assert len(transcript) == 2
