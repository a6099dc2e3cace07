"""REST: re-running a conversation (``POST .../rerun``), and controlling a paced replay
that a subscriber watches over SSE (``POST .../replay/{replay_id}``)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from server.auth import public_id
from server.errors import json_response
from server.http import read_model, target
from server.replays import start_replay
from server.schemas import ITERATIONS_MAX, TITLE_MAX, check_conversation_id
from server.streaming.pacing import ReplayControl


class Rerun(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    replay_mode: Literal["recorded", "execute"] = "recorded"
    conversation_id: str | None = None
    title: str | None = Field(default=None, max_length=TITLE_MAX)
    max_iterations: int | None = Field(default=None, ge=1, le=ITERATIONS_MAX)

    @field_validator("conversation_id")
    @classmethod
    def _safe_id(cls, value: str | None) -> str | None:
        return None if value is None else check_conversation_id(value)


async def rerun(request: Request) -> Response:
    """A new conversation re-running this one: ``recorded`` (default) answers its agent
    from the recorded model replies, ``execute`` acts its recorded actions again."""
    service, user, record = await target(request)
    body = await read_model(request, Rerun) if await request.body() else Rerun()
    mode = body.replay_mode
    replay = await start_replay(
        service, user, record, mode, conversation_id=body.conversation_id, title=body.title,
        max_iterations=body.max_iterations,
    )  # fmt: skip
    return json_response(
        {
            "status": "ok",
            "conversation_id": public_id(replay.id),
            "conversation_status": replay.status,
            "replay_mode": mode,
            "recording_id": public_id(record.id),
            "queue_position": service.sessions.queue_position(replay.id),
        },
        status=201,
    )


async def control_replay(request: Request) -> Response:
    """Pause, resume, change the speed of, or seek a paced replay this caller watches
    (over SSE, which cannot send); answers the replay's state."""
    _, user, record = await target(request)
    control = await read_model(request, ReplayControl)
    streams = request.app.state.streams
    state = await streams.control_replay(request.path_params["replay_id"], user, record.id, control)
    return json_response(state)


routes = [
    Route("/api/conversations/{conversation_id}/rerun", rerun, methods=["POST"]),
    Route(
        "/api/conversations/{conversation_id}/replay/{replay_id}",
        control_replay,
        methods=["POST"],
    ),
]
