"""The python-engineio behaviour `server.streaming.engineio_adapter` relies on: these fail
when the library changes underneath."""

from __future__ import annotations

import asyncio
import logging

import engineio.packet
from engineio.async_socket import AsyncSocket

from server.streaming.engineio_adapter import BoundedSocketIO, BurstFilter, ByteQueue


def packet(size: int) -> engineio.packet.Packet:
    return engineio.packet.Packet(engineio.packet.MESSAGE, "x" * size)


async def test_engineio_sockets_take_their_queue_from_create_queue() -> None:
    sio = BoundedSocketIO(send_buffer_bytes=1000, async_mode="asgi")
    socket = AsyncSocket(sio.eio, "a-session")
    assert isinstance(socket.queue, ByteQueue)
    assert socket.queue.bound == 1000


async def test_the_queue_counts_bytes_and_signals_room() -> None:
    queue = ByteQueue(bound=1000)
    queue.put_nowait(packet(600))
    assert queue.has_room()
    queue.put_nowait(packet(600))
    assert not queue.has_room()
    waiting = asyncio.create_task(queue.room())
    await asyncio.sleep(0)
    assert not waiting.done()
    queue.get_nowait()
    await asyncio.wait_for(waiting, 1)
    assert queue.bytes == 600
    queue.put_nowait(None)  # Engine.IO's "stop writing" sentinel counts as small
    assert queue.has_room()


async def test_the_queue_is_drained_only_while_engineio_waits_on_it_empty_handed() -> None:
    """A frame may bypass the queue (`Outbox.offer_event`) only when Engine.IO's writer
    holds nothing unsent: it waits in ``poll()`` on an empty queue."""
    sio = BoundedSocketIO(send_buffer_bytes=1000, async_mode="asgi")
    socket = AsyncSocket(sio.eio, "a-session")
    queue = socket.queue
    assert isinstance(queue, ByteQueue)
    assert not queue.drained  # nobody reads: whatever comes must wait in the queue
    polling = asyncio.create_task(socket.poll())
    for _ in range(3):
        await asyncio.sleep(0)
    assert queue.drained
    queue.put_nowait(packet(10))
    assert not queue.drained  # the writer is woken, but the packet is not sent yet
    sent = await asyncio.wait_for(polling, 1)
    assert [item.data for item in sent] == ["x" * 10]
    assert not queue.drained  # in the writer's hands until it polls again
    polling = asyncio.create_task(socket.poll())
    for _ in range(3):
        await asyncio.sleep(0)
    assert queue.drained
    queue.put_nowait(None)  # Engine.IO's "stop writing"
    assert await asyncio.wait_for(polling, 1) == []


def test_bursts_of_one_error_log_one_line_without_a_traceback() -> None:
    burst = BurstFilter(window=60)
    records = []
    for _ in range(100):
        try:
            raise ValueError("bad packet")
        except ValueError as exc:
            record = logging.LogRecord(
                "engineio",
                logging.ERROR,
                __file__,
                1,
                "receive error",
                None,
                (ValueError, exc, None),
            )
        if burst.filter(record):
            records.append(record)
    assert len(records) == 1
    assert records[0].exc_info is None
    assert "ValueError: bad packet" in records[0].getMessage()
