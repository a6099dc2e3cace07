"""Watch a threadline conversation over Socket.IO, one line per event.

    python examples/watch.py --url http://127.0.0.1:3000 --message "look around"
    python examples/watch.py --conversation ID                # follow an existing one
    python examples/watch.py --drop-after 5                   # drop once, resume

Without ``--conversation`` it creates a conversation (its agent starts on the message);
with one, ``--message`` is sent as an ``oh_user_action``. Events arrive as ``oh_event``;
when the connection drops, the watcher reconnects with ``latest_event_id`` = the last id
it printed, so the server resumes right after it: no event is missed or printed twice.
It exits when the agent's run ends: 0 if it finished, 1 if it stopped or failed.

Needs python-socketio with its asyncio client (``pip install "python-socketio[asyncio_client]"
httpx``). Progress notes go to stderr, events to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlencode

import httpx
import socketio

Event = dict[str, Any]
ENDED = {"finished", "stopped", "error", "rejected"}
DEFAULT_MESSAGE = "Look around the workspace and report back."


def note(text: str) -> None:
    print(f"-- {text}", file=sys.stderr, flush=True)


def describe(event: Event) -> str:
    """One line: id, source, kind and the gist."""
    kind = event.get("action") or event.get("observation") or "?"
    args, extras = event.get("args") or {}, event.get("extras") or {}
    if kind == "agent_state_changed":
        gist = " ".join(filter(None, [extras.get("agent_state"), extras.get("reason")]))
    elif tasks := args.get("task_list") or extras.get("task_list"):
        gist = " ".join(
            f"[{'x' if task['status'] == 'done' else ' '}] {task['id']}" for task in tasks
        )
    elif "command" in args:
        gist = f"$ {args['command']}"
    elif kind == "run":
        exit_code = (extras.get("metadata") or {}).get("exit_code")
        gist = f"exit {exit_code}: {event.get('content', '')}"
    elif "path" in args:
        gist = args["path"]
    else:
        gist = args.get("content") or args.get("final_thought") or event.get("message") or ""
    gist = " ".join(str(gist).split())
    if len(gist) > 80:
        gist = gist[:79] + "…"
    return f"{event['id']:>4}  {event.get('source', ''):<11} {kind:<20} {gist}"


def agent_state(event: Event) -> str | None:
    if event.get("observation") == "agent_state_changed":
        return (event.get("extras") or {}).get("agent_state")
    return None


async def newest_id(http: httpx.AsyncClient, conversation_id: str) -> int:
    response = await http.get(
        f"/api/conversations/{conversation_id}/events", params={"reverse": "true", "limit": 1}
    )
    response.raise_for_status()
    events = response.json()["events"]
    return int(events[0]["id"]) if events else -1


class Watcher:
    """Prints a conversation's events in order, reconnecting from the last id seen.

    Each connection gets its own client and inbox. python-socketio hands every incoming
    message to a task of its own, so a few events that arrived just before a drop can
    land after the "disconnected" mark; on a fresh inbox they cannot be mistaken for
    events of the next connection (which replays them anyway).
    """

    def __init__(self, url: str, conversation_id: str, api_key: str | None) -> None:
        self.url = url
        self.conversation_id = conversation_id
        self.api_key = api_key
        self.last_id = -1
        self.sio: socketio.AsyncClient  # the current connection's, set by connect()
        self.inbox: asyncio.Queue[Event | None]

    async def connect(self) -> None:
        """Connect from ``last_id``. Raises `Refused` when the server says no and
        `ConnectionError` when it cannot be reached."""
        inbox: asyncio.Queue[Event | None] = asyncio.Queue()  # None: disconnected
        refusals: list[str] = []
        # Reconnecting is ours to do: the client's own would reuse the first URL, and
        # with it the first latest_event_id.
        sio = socketio.AsyncClient(reconnection=False)
        sio.on("oh_event", inbox.put_nowait)
        sio.on("disconnect", lambda *_: inbox.put_nowait(None))
        sio.on("connect_error", lambda data: refusals.append(_reason(data)))
        query: dict[str, str | int] = {
            "conversation_id": self.conversation_id,
            "latest_event_id": self.last_id,
        }
        if self.api_key:
            query["session_api_key"] = self.api_key
        try:
            await sio.connect(
                f"{self.url}?{urlencode(query)}", transports=["websocket"], wait_timeout=10
            )
        except socketio.exceptions.ConnectionError as exc:
            if refusals:
                raise Refused(refusals[0]) from None
            raise ConnectionError(str(exc)) from None
        self.sio, self.inbox = sio, inbox

    async def reconnect(self) -> None:
        delay = 0.2
        while True:
            note(f"reconnecting with latest_event_id={self.last_id}")
            try:
                await self.connect()
                return
            except ConnectionError as exc:
                note(f"not yet ({exc}); next try in {delay:.1f}s")
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def send_message(self, text: str) -> int:
        action = {"action": "message", "args": {"content": text, "image_urls": []}}
        ack = await self.sio.call("oh_user_action", action, timeout=10)
        if not isinstance(ack, dict) or ack.get("status") != "ok":
            raise Refused(f"the server did not take the message: {ack}")
        note(f"sent the message as event {ack['event_id']}")
        return int(ack["event_id"])

    async def run(self, *, message: str | None, end_from: int, drop_after: int) -> int:
        """Print events until a run ends at an id >= ``end_from`` (or after ``message``,
        if one is sent); disconnect deliberately once after ``drop_after`` events."""
        await self.connect()
        if message is not None:
            end_from = await self.send_message(message) + 1
        printed = 0
        while True:
            event = await self.inbox.get()
            if event is None:
                await self.reconnect()
                continue
            print(describe(event), flush=True)
            self.last_id = event["id"]
            printed += 1
            state = agent_state(event)
            if state in ENDED and event["id"] >= end_from:
                await self.sio.disconnect()
                return 0 if state == "finished" else 1
            if printed == drop_after:
                note(f"dropping the connection after {printed} events (--drop-after)")
                await self.sio.disconnect()


class Refused(Exception):
    """The server turned us away (unknown conversation, bad key, bad message)."""


def _reason(data: Any) -> str:
    return str(data.get("message", data)) if isinstance(data, dict) else str(data)


async def main(arguments: argparse.Namespace) -> int:
    try:
        return await watch(arguments)
    except httpx.HTTPStatusError as exc:
        note(f"{exc.request.method} {exc.request.url.path}: {_error_message(exc.response)}")
    except (httpx.HTTPError, Refused, ConnectionError) as exc:
        note(f"{type(exc).__name__}: {exc}")
    return 2


def _error_message(response: httpx.Response) -> str:
    try:
        return str(response.json()["message"])
    except (ValueError, KeyError, TypeError):
        return f"HTTP {response.status_code}"


async def watch(arguments: argparse.Namespace) -> int:
    headers = {"X-Session-API-Key": arguments.api_key} if arguments.api_key else {}
    message = arguments.message
    async with httpx.AsyncClient(base_url=arguments.url, headers=headers, timeout=10) as http:
        if arguments.conversation:
            conversation_id = arguments.conversation
            # Without a message, follow until the run that ends at or after the newest
            # event we can see now; a finished conversation replays and exits.
            end_from = max(await newest_id(http, conversation_id), 0)
        else:
            response = await http.post(
                "/api/conversations", json={"initial_user_msg": message or DEFAULT_MESSAGE}
            )
            response.raise_for_status()
            conversation_id = response.json()["conversation_id"]
            note(f"created conversation {conversation_id}")
            end_from, message = 0, None
    watcher = Watcher(arguments.url, conversation_id, arguments.api_key)
    return await watcher.run(message=message, end_from=end_from, drop_after=arguments.drop_after)


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Watch a threadline conversation over Socket.IO, one line per event."
    )
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the threadline server")
    parser.add_argument("--message", help="what to ask the agent")
    parser.add_argument("--conversation", help="watch this conversation instead of a new one")
    parser.add_argument(
        "--drop-after", type=int, default=0, metavar="N", help="drop the connection once after N"
    )
    parser.add_argument("--api-key", help="session API key, when the server requires keys")
    return parser.parse_args(argv)


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_arguments())))
    except KeyboardInterrupt:
        sys.exit(130)
