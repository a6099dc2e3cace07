"""The ``threadline`` commands for people at a terminal, driving a running server (maybe
another machine's) through the client library: ``ls``, ``tail``, ``send``, ``export``,
``import``. Each prints what it did, and errors as one line (server/cli.py)."""

from __future__ import annotations

import argparse
import os
import sys

import orjson

from client import ENDED_STATES, Threadline, agent_state_of, default_url
from client.pretty import describe, money
from server import transfer


def add_commands(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    remote = argparse.ArgumentParser(add_help=False)
    remote.add_argument(
        "--url",
        default=default_url(),
        help="the server (default: %(default)s, from $THREADLINE_URL, else "
        "$THREADLINE_HOST and $THREADLINE_PORT)",
    )
    remote.add_argument(
        "--api-key",
        default=os.environ.get("THREADLINE_API_KEY"),
        help="API key, when the server requires one (default: $THREADLINE_API_KEY)",
    )

    listing = commands.add_parser("ls", parents=[remote], help="list conversations, newest first")
    listing.add_argument("--limit", type=int, default=20, help="how many (default: %(default)s)")
    listing.add_argument("--json", action="store_true", help="one JSON object per line")

    tail = commands.add_parser(
        "tail", parents=[remote], help="follow a conversation's events live (resumes on drops)"
    )
    tail.add_argument("conversation_id")
    tail.add_argument(
        "--after",
        type=int,
        default=-1,
        metavar="ID",
        help="start after this event id (default: %(default)s, from the first event)",
    )
    tail.add_argument("--json", action="store_true", help="each event as one line of JSON")
    tail.add_argument(
        "--until-end",
        action="store_true",
        help="exit when the current (or next) run ends: 0 if it finished, 1 otherwise",
    )
    tail.add_argument(
        "--transport",
        choices=["websocket", "socketio"],
        default="websocket",
        help="how to stream (default: %(default)s; socketio needs threadline[socketio])",
    )

    send = commands.add_parser(
        "send", parents=[remote], help="send the agent a message (starts a run if none is)"
    )
    send.add_argument("conversation_id")
    send.add_argument("text")

    exporting = commands.add_parser(
        "export", parents=[remote], help="write a conversation's trajectory to a file"
    )
    exporting.add_argument("conversation_id")
    exporting.add_argument(
        "-o", "--output", default="-", help="file to write (default: stdout); .jsonl: JSON Lines"
    )
    exporting.add_argument(
        "--format",
        choices=["json", "jsonl"],
        help="default: from the file name (.jsonl, .ndjson), else json",
    )
    exporting.add_argument(
        "--include-hidden", action="store_true", help="keep events marked hidden"
    )
    importing = commands.add_parser(
        "import", parents=[remote], help="create a conversation from a recorded trajectory"
    )
    importing.add_argument("file", help="a trajectory (.json) or JSON Lines (.jsonl); - for stdin")
    importing.add_argument("--title", help="title of the new conversation (default: recorded)")
    importing.add_argument(
        "--conversation-id", help="id of the new conversation (default: a new one)"
    )


def run_command(arguments: argparse.Namespace) -> int:
    with Threadline(arguments.url, api_key=arguments.api_key or None) as threadline:
        return _COMMANDS[arguments.command](threadline, arguments)


def _ls(threadline: Threadline, arguments: argparse.Namespace) -> int:
    page = threadline.list(limit=arguments.limit)
    if arguments.json:
        for conversation in page.conversations:
            print(orjson.dumps(conversation.raw).decode())
        return 0
    if not page.conversations:
        print('no conversations yet: threadline send needs one; create one with\n'
              f'  curl -s -XPOST {threadline.url}/api/conversations '
              """-d '{"initial_user_msg": "look around"}'""",
              file=sys.stderr)  # fmt: skip
        return 0
    rows = [("ID", "STATUS", "STATE", "STEPS", "COST", "CREATED", "TITLE")]
    for c in page.conversations:
        steps = f"{c.iteration}/{c.max_iterations}" if c.max_iterations else str(c.iteration)
        created = f"{c.created_at:%Y-%m-%d %H:%M}" if c.created_at else ""
        status = f"QUEUED #{c.queue_position}" if c.queue_position else c.status
        cost = money(c.cost, c.currency)
        rows.append((c.id, status, c.agent_state or "", steps, cost, created, c.title))
    widths = [max(len(row[column]) for row in rows) for column in range(6)]
    for row in rows:
        print(
            "  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False))
            + "  "
            + row[6]
        )
    if page.next_page_id:
        print(f"(more: --limit {arguments.limit * 2})", file=sys.stderr)
    return 0


def _tail(threadline: Threadline, arguments: argparse.Namespace) -> int:
    conversation_id = arguments.conversation_id
    end_from = 0
    if arguments.until_end:
        newest = threadline.events_page(conversation_id, reverse=True, limit=1).events
        end_from = int(newest[0]["id"]) if newest else 0
    last = arguments.after
    try:
        for event in threadline.watch(
            conversation_id, after=arguments.after, transport=arguments.transport
        ):
            last = event["id"]
            print(orjson.dumps(event).decode() if arguments.json else describe(event), flush=True)
            state = agent_state_of(event)
            if arguments.until_end and state in ENDED_STATES and event["id"] >= end_from:
                return 0 if state == "finished" else 1
    except KeyboardInterrupt:
        print(
            f"\nstopped at event {last}; go on with: threadline tail {conversation_id} "
            f"--after {last}",
            file=sys.stderr,
        )
        return 130
    return 0


def _send(threadline: Threadline, arguments: argparse.Namespace) -> int:
    event_id = threadline.send(arguments.conversation_id, arguments.text)
    print(event_id)
    return 0


def _export(threadline: Threadline, arguments: argparse.Namespace) -> int:
    transfer.export_conversation(
        threadline,
        arguments.conversation_id,
        arguments.output,
        lines={"json": False, "jsonl": True}.get(arguments.format),
        include_hidden=arguments.include_hidden,
    )
    return 0


def _import(threadline: Threadline, arguments: argparse.Namespace) -> int:
    answer = transfer.import_recording(
        threadline, arguments.file, title=arguments.title, conversation_id=arguments.conversation_id
    )
    print(answer.conversation_id)
    return 0


_COMMANDS = {"ls": _ls, "tail": _tail, "send": _send, "export": _export, "import": _import}
COMMANDS = frozenset(_COMMANDS)
