"""Watch a threadline conversation, one line per event, with the client library.

    python examples/watch.py --url http://127.0.0.1:3000 --message "look around"
    python examples/watch.py --conversation ID                # follow an existing one
    python examples/watch.py --drop-after 5                   # drop once, resume
    python examples/watch.py --transport socketio             # pip install 'threadline[socketio]'

Without ``--conversation`` it creates a conversation (its agent starts on the message);
with one, ``--message`` is sent to it. `AsyncThreadline.watch` resumes by itself after a
drop or a server restart; ``--drop-after`` also shows resuming by hand: it stops watching
after N events and watches again from the last id it printed (``after=``), so no event
is missed or printed twice. It exits when the agent's run ends: 0 if it finished, 1 if
it stopped or failed, 2 on an error. Progress notes go to stderr, events to stdout.
"""

from __future__ import annotations

import argparse
import asyncio
import sys

from client import ENDED_STATES, AsyncThreadline, ClientError, agent_state_of, default_url
from client.pretty import describe

DEFAULT_MESSAGE = "Look around the workspace and report back."


def note(text: str) -> None:
    print(f"-- {text}", file=sys.stderr, flush=True)


async def watch(arguments: argparse.Namespace) -> int:
    async with AsyncThreadline(arguments.url, api_key=arguments.api_key) as threadline:
        if arguments.conversation:
            conversation_id = arguments.conversation
            newest = await threadline.events_page(conversation_id, reverse=True, limit=1)
            # Follow until the run that ends at or after the newest event there is now
            # (or after the message we send): a finished conversation replays and exits.
            end_from = newest.events[0]["id"] if newest.events else 0
            if arguments.message:
                end_from = await threadline.send(conversation_id, arguments.message) + 1
                note(f"sent the message as event {end_from - 1}")
        else:
            created = await threadline.create(arguments.message or DEFAULT_MESSAGE)
            conversation_id, end_from = created.id, 0
            note(f"created conversation {conversation_id}")

        last, dropped = -1, arguments.drop_after <= 0
        while True:
            async for event in threadline.watch(
                conversation_id, after=last, transport=arguments.transport
            ):
                print(describe(event), flush=True)
                last = event["id"]
                state = agent_state_of(event)
                if state in ENDED_STATES and last >= end_from:
                    return 0 if state == "finished" else 1
                if not dropped and last + 1 >= arguments.drop_after:
                    note(f"dropping the connection after {last + 1} events (--drop-after)")
                    dropped = True
                    break
            note(f"reconnecting with latest_event_id={last}")


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Watch a threadline conversation, one line per event."
    )
    parser.add_argument(
        "--url",
        default=default_url(),
        help="the server (default: $THREADLINE_URL, else %(default)s)",
    )
    parser.add_argument("--message", help="what to ask the agent")
    parser.add_argument("--conversation", help="watch this conversation instead of a new one")
    parser.add_argument(
        "--drop-after", type=int, default=0, metavar="N", help="drop the connection once after N"
    )
    parser.add_argument(
        "--transport", choices=["websocket", "socketio"], default="websocket", help="how to stream"
    )
    parser.add_argument("--api-key", help="session API key, when the server requires keys")
    return parser.parse_args(argv)


async def main(arguments: argparse.Namespace) -> int:
    try:
        return await watch(arguments)
    except ClientError as exc:
        note(f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
        return 2


if __name__ == "__main__":
    try:
        sys.exit(asyncio.run(main(parse_arguments())))
    except KeyboardInterrupt:
        sys.exit(130)
