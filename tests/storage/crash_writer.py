"""A writer process for the crash test: appends flat out from several tasks and prints
``<conversation> <id> <marker>`` for every append once it is acknowledged."""

from __future__ import annotations

import asyncio
import sys

from storage import NewConversation
from storage.factory import open_storage
from tests.storage.factories import say


async def main(url: str, conversations: int, tasks_per_conversation: int) -> None:
    storage = await open_storage(url)
    ids = []
    for index in range(conversations):
        record = await storage.create_conversation(NewConversation(id=f"crash-{index}"))
        ids.append(record.id)
    print("ready", flush=True)

    async def writer(conversation_id: str, task: int) -> None:
        sequence = 0
        while True:
            marker = f"{conversation_id}/{task}/{sequence}"
            stored = await storage.append(conversation_id, say(marker))
            sys.stdout.write(f"{conversation_id} {stored.id} {marker}\n")
            sys.stdout.flush()
            sequence += 1

    await asyncio.gather(
        *(writer(cid, task) for cid in ids for task in range(tasks_per_conversation))
    )


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
