"""Webhooks on a real server with a real local receiver: signed deliveries recorded and
visible, retries with backoff, giving up, refusals at the boundary (loopback without
the operator's allowance, redirects to another host, other schemes), a dead or slow
receiver holding nothing up, and delivery at least once across a restart."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio

from tests.fakes.webhook_receiver import Receiver, receiving
from tests.server.prometheus import scrape, value
from tests.server.running import RunningServer
from tests.server.tasks_support import QUICK, documented_client, follow_task

SECRET = "a-receiver-secret-0123456789"
ALLOW = {
    **QUICK,
    "THREADLINE_WEBHOOK_ALLOW_HOSTS": "127.0.0.1",  # the tests' receiver, explicitly
    "THREADLINE_WEBHOOK_RETRY_BASE": "0.2",
    "THREADLINE_WEBHOOK_MAX_ATTEMPTS": "3",
    "THREADLINE_WEBHOOK_TIMEOUT": "1",
}


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    running = RunningServer(tmp_path_factory.mktemp("webhooks"), env=ALLOW).start()
    yield running
    running.stop()


@pytest_asyncio.fixture
async def client(server: RunningServer) -> AsyncIterator[httpx.AsyncClient]:
    async for http, _ in documented_client(server):
        yield http


def hook(url: str, *events: str) -> dict[str, object]:
    return {"url": url, "secret": SECRET, "events": list(events)}


async def hooked_conversation(client: httpx.AsyncClient, url: str, *events: str) -> str:
    """An idle conversation with a webhook (the shell agent: a message is a command)."""
    conversation = (await client.post("/api/conversations", json={"agent": "shell"})).json()
    conversation_id = conversation["conversation_id"]
    response = await client.put(
        f"/api/conversations/{conversation_id}/webhook", json=hook(url, *events)
    )
    assert response.status_code == 200, response.text
    return conversation_id  # type: ignore[no-any-return]


Delivery = dict[str, object]


async def deliveries(
    client: httpx.AsyncClient, path: str, count: int = 0, final: bool = False
) -> list[Delivery]:
    """The attempts recorded for ``path``, oldest first, once there are ``count`` (and,
    with ``final``, the last is not a retry). Deliveries are not events, so this asks."""
    async with asyncio.timeout(30):
        while True:
            answer = await client.get(f"{path}/webhooks/deliveries")
            found: list[Delivery] = answer.json()["deliveries"][::-1]
            if len(found) >= count and not (final and found[-1]["outcome"] == "retrying"):
                return found
            await asyncio.sleep(0.05)


async def test_task_events_are_signed_delivered_and_recorded(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    async with receiving(Receiver()) as receiver:
        created = await client.post(
            "/api/tasks",
            json={
                "task_type": "shell", "description": "hi", "parameters": {"command": "echo hi"},
                "webhook": hook(receiver.url, "task_state"),
            },
        )  # fmt: skip
        task_id = created.json()["task_id"]
        posts = await receiver.wait_for(3)
    assert all(post.signed_by(SECRET) for post in posts)
    assert not posts[0].signed_by("another-secret-0123456789")
    bodies = [post.json() for post in posts]
    assert [body["event"]["extras"]["status"] for body in bodies] == [
        "created", "running", "completed",
    ]  # fmt: skip
    assert [post.headers["x-threadline-event-id"] for post in posts] == [
        body["event_id"] for body in bodies
    ]
    assert bodies[0]["origin"] == {"type": "task", "id": task_id}
    assert bodies[0]["event_id"] == f"{task_id}:0"
    recorded = await deliveries(client, f"/api/tasks/{task_id}", 3)
    assert [(d["outcome"], d["attempt"], d["http_status"]) for d in recorded] == [
        ("delivered", 1, 200)
    ] * 3
    assert [d["event_id"] for d in recorded] == [body["event_id"] for body in bodies]
    shown = (await client.get(f"/api/conversations/{task_id}/webhook")).json()
    assert shown["url"] == receiver.url
    assert "secret" not in shown
    assert SECRET not in (await client.get(f"/api/tasks/{task_id}")).text


async def test_failures_are_retried_with_backoff_then_given_up(client: httpx.AsyncClient) -> None:
    async with receiving(Receiver(statuses=[500, 503, 200])) as receiver:
        conversation_id = await hooked_conversation(client, receiver.url, "message")
        await client.post(f"/api/conversations/{conversation_id}/message", json={"message": "true"})
        posts = await receiver.wait_for(3)
        ids = {post.headers["x-threadline-event-id"] for post in posts}
        assert ids == {f"{conversation_id}:0"}  # one event, three attempts
        assert [post.headers["x-threadline-attempt"] for post in posts] == ["1", "2", "3"]
        assert posts[1].at - posts[0].at >= 0.2
        assert posts[2].at - posts[1].at >= 0.4  # the wait doubles
    recorded = await deliveries(client, f"/api/conversations/{conversation_id}", 3)
    assert [(d["attempt"], d["outcome"], d["http_status"]) for d in recorded] == [
        (1, "retrying", 500), (2, "retrying", 503), (3, "delivered", 200),
    ]  # fmt: skip

    async with receiving(Receiver(statuses=[500])) as failing:
        conversation_id = await hooked_conversation(client, failing.url, "message")
        for text in ("true", "true"):
            await client.post(
                f"/api/conversations/{conversation_id}/message", json={"message": text}
            )
        posts = await failing.wait_for(6)  # both events, three attempts each: given up, moved on
    event_ids = [post.json()["event"]["id"] for post in posts]
    assert event_ids[:3] == [0, 0, 0]
    assert event_ids[3:] == [event_ids[3]] * 3
    assert event_ids[3] > 0
    recorded = await deliveries(client, f"/api/conversations/{conversation_id}", 6, final=True)
    assert recorded[2]["outcome"] == "failed"
    assert recorded[2]["error"] == "the receiver answered 500"
    # An operator sees what was given up (the first event's, at least; the second's too).
    metrics = scrape((await client.get("/metrics")).text)
    assert value(metrics, "threadline_webhook_failures_total") >= 2


async def test_redirects_to_another_host_and_other_schemes_are_refused(
    client: httpx.AsyncClient,
) -> None:
    async with receiving(
        Receiver(statuses=[307], headers={"Location": "http://127.0.0.2/x"})
    ) as receiver:
        conversation_id = await hooked_conversation(client, receiver.url, "message")
        await client.post(f"/api/conversations/{conversation_id}/message", json={"message": "true"})
        await receiver.wait_for(1)
        recorded = await deliveries(client, f"/api/conversations/{conversation_id}", 1)
    assert len(receiver.received) == 1  # not retried
    assert (recorded[0]["outcome"], recorded[0]["error"]) == (
        "refused", "redirected to another host (127.0.0.2): not followed",
    )  # fmt: skip
    for url in ("ftp://127.0.0.1/x", "http://user:pw@127.0.0.1/x", "/relative"):
        response = await client.put(f"/api/conversations/{conversation_id}/webhook", json=hook(url))
        assert (response.status_code, response.json()["field"]) == (400, "url")


async def test_a_dead_or_slow_receiver_holds_nothing_up(
    client: httpx.AsyncClient, server: RunningServer
) -> None:
    async with receiving(Receiver(hang=True)) as slow:
        began = asyncio.get_running_loop().time()
        created = await client.post(
            "/api/tasks",
            json={"task_type": "conversation", "description": "survey", "webhook": hook(slow.url)},
        )
        task_id = created.json()["task_id"]
        # Its stream delivered every step and the task ended, while the receiver held
        # the first event's attempts (1 s each).
        assert (await follow_task(server, task_id))[-1] == "completed"
        assert asyncio.get_running_loop().time() - began < 10
        assert len(slow.received) <= 3
    async with receiving(Receiver()) as gone:
        url = gone.url
    conversation_id = await hooked_conversation(client, url, "message")  # nothing listens
    await client.post(f"/api/conversations/{conversation_id}/message", json={"message": "true"})
    recorded = await deliveries(client, f"/api/conversations/{conversation_id}", 3, final=True)
    assert [d["outcome"] for d in recorded] == ["retrying", "retrying", "failed"]
    assert "ConnectError" in str(recorded[0]["error"])


async def test_loopback_is_refused_unless_the_operator_allows_it(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "strict", env=QUICK).start()
    try:
        async with receiving(Receiver()) as receiver:
            async for client, _ in documented_client(server):
                for url in (receiver.url, f"http://localhost:{receiver.port}/h", "http://[::1]/h"):
                    conversation_id = await hooked_conversation(client, url, "message")
                    await client.post(
                        f"/api/conversations/{conversation_id}/message", json={"message": "true"}
                    )
                    path = f"/api/conversations/{conversation_id}"
                    recorded = await deliveries(client, path, 1)
                    assert recorded[0]["outcome"] == "refused", recorded
                    assert "THREADLINE_WEBHOOK_ALLOW_HOSTS" in str(recorded[0]["error"])
        assert receiver.received == []
    finally:
        server.stop()


async def test_at_least_once_across_a_restart(tmp_path: Path) -> None:
    server = RunningServer(tmp_path / "restart", env=ALLOW).start()
    try:
        async with receiving(Receiver(hang=True)) as receiver:
            async for client, _ in documented_client(server):
                conversation_id = await hooked_conversation(client, receiver.url, "message")
                await client.post(
                    f"/api/conversations/{conversation_id}/message", json={"message": "true"}
                )
            (first,) = await receiver.wait_for(1)  # received, never answered
            server.stop()
            receiver.hang = False
            server.start()
            second = (await receiver.wait_for(2))[1]
        assert first.headers["x-threadline-event-id"] == second.headers["x-threadline-event-id"]
        async for client, _ in documented_client(server):
            path = f"/api/conversations/{conversation_id}"
            recorded = await deliveries(client, path, 1, final=True)
            assert recorded[-1]["outcome"] == "delivered"
    finally:
        server.stop()
