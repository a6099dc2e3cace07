"""The cluster ledger on real PostgreSQL (`storage/postgres/cluster.py`), two stores
standing for two server processes: decisions are serialized by the lock, leases expire
by the database's clock, a process whose lease was removed learns it at renewal, and a
deleted conversation takes its row along."""

from __future__ import annotations

import asyncio

import pytest

from storage import NewConversation
from storage.cluster import ClusterLedger
from storage.postgres import PostgresStorage
from tests.storage.test_postgres import shared_url

__all__ = ["shared_url"]  # the fixture, used by name


def ledger_of(store: PostgresStorage) -> ClusterLedger:
    ledger = store.cluster()
    assert ledger is not None
    return ledger


async def test_two_processes_never_both_take_the_last_slot(shared_url: str) -> None:
    stores = [await PostgresStorage.open(shared_url) for _ in range(2)]
    try:
        for number in range(10):
            await stores[0].create_conversation(NewConversation(id=f"c{number}"))

        async def take(store: PostgresStorage, conversation_id: str) -> bool:
            async with ledger_of(store).transaction() as transaction:
                running = [row for row in transaction.rows if row.state == "running"]
                if len(running) >= 3:
                    return False
                await asyncio.sleep(0.01)  # a decision takes time; the lock holds
                await transaction.add(conversation_id, "alice", 5, f"node{id(store)}")
                return True

        taken = await asyncio.gather(*(take(stores[n % 2], f"c{n}") for n in range(10)))
        assert sum(taken) == 3
        assert len(await ledger_of(stores[1]).snapshot()) == 3
    finally:
        for store in stores:
            await store.close()


async def test_leases_expire_by_the_database_clock_and_renewal_says_when_lost(
    shared_url: str,
) -> None:
    first = await PostgresStorage.open(shared_url)
    second = await PostgresStorage.open(shared_url)
    try:
        await first.create_conversation(NewConversation(id="run"))
        ledger, other = ledger_of(first), ledger_of(second)
        await ledger.join("one", 0.5)
        await other.join("two", 30)
        async with ledger.transaction() as transaction:
            await transaction.add("run", None, 5, "one")
        async with other.transaction() as transaction:
            assert await transaction.expired_nodes() == []
        assert await ledger.renew("one", 0.5, {"run": 123})
        assert (await other.snapshot())[0].last_active_us == 123

        await asyncio.sleep(0.7)
        async with other.transaction() as transaction:
            assert await transaction.expired_nodes() == ["one"]
            assert await transaction.remove("run", "one")
            await transaction.remove_node("one")
        assert not await ledger.renew("one", 0.5, {})  # taken over: it must stop
        assert await other.renew("two", 30, {})
    finally:
        await first.close()
        await second.close()


async def test_a_failed_decision_writes_nothing_and_deletion_takes_the_row(
    shared_url: str,
) -> None:
    store = await PostgresStorage.open(shared_url)
    try:
        await store.create_conversation(NewConversation(id="queued"))
        ledger = ledger_of(store)

        async def failed_decision() -> None:
            async with ledger.transaction() as transaction:
                await transaction.add("queued", None, 5, None)
                raise RuntimeError("the launch failed")

        with pytest.raises(RuntimeError):
            await failed_decision()
        assert await ledger.snapshot() == []
        async with ledger.transaction() as transaction:
            row = await transaction.add("queued", None, 9, None)
        assert row.state == "queued"
        assert row.priority == 9
        await store.delete_conversation("queued")
        assert await ledger.snapshot() == []
    finally:
        await store.close()
