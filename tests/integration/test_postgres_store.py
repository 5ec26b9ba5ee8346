"""What the PostgreSQL store adds to the store contract: the remembered-send shortcut never
outlives a change of who exists, and one recipient's messages take consecutive seqs in id
order under concurrent senders (what the cluster's bus will rely on, DESIGN.md "Scale-out")."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg
import pytest_asyncio

from core import postgres_migrations
from core.postgres_store import PostgresStore
from wirechat.services import PostgresService


@pytest_asyncio.fixture
async def store(postgres: PostgresService) -> AsyncIterator[PostgresStore]:
    pg = await PostgresStore(postgres.url, pool_size=4).open()  # (creates the schema)
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(postgres_migrations.TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    yield pg
    await pg.close()


async def test_a_repeated_send_follows_accounts_that_came_and_went(store):
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    first = await store.add_message(al, "1", 1, ["bob", "cy"])
    again = await store.add_message(al, "2", 2, ["bob", "cy"])  # the one-statement path
    assert first.recipients == again.recipients == {"bob": bob}
    assert again.conversation_id == first.conversation_id
    cy = await store.create_account("cy", "h", 3)  # cy signs up: now a recipient
    third = await store.add_message(al, "3", 4, ["bob", "cy"])
    assert third.recipients == {"bob": bob, "cy": cy}
    assert third.conversation_id != first.conversation_id
    await store.delete_account(bob, purge_sent=True, now_ms=5)
    new_bob = await store.create_account("bob", "h", 6)  # the name again, a new account
    fourth = await store.add_message(al, "4", 7, ["bob", "cy"])
    assert fourth.recipients == {"bob": new_bob, "cy": cy}
    assert [d.body for d in await store.pending_after(new_bob, 0, 10)] == ["4"]
    await store.delete_account(al, purge_sent=False, now_ms=8)
    assert (await store.add_message(al, "5", 9, ["bob", "cy"])).message_id == 0  # sender gone


async def test_one_recipients_seqs_follow_its_message_ids_under_concurrent_senders(
    store, postgres: PostgresService
):
    bob = await store.create_account("bob", "h", 0)
    senders = [await store.create_account(f"s{i}", "h", 0) for i in range(6)]

    async def send(sender: int) -> None:
        for n in range(15):
            await store.add_message(sender, f"{sender}:{n}", n, ["bob", f"s{(sender % 6)}"])

    await asyncio.gather(*(send(s) for s in senders))
    conn = await asyncpg.connect(postgres.url)
    try:
        rows = await conn.fetch(
            "SELECT message_id, seq FROM pending WHERE recipient_id = $1 ORDER BY message_id", bob
        )
    finally:
        await conn.close()
    assert [row["seq"] for row in rows] == list(range(1, 6 * 15 + 1))  # no gap, id order
    for sender in senders:  # each sender's messages in the order sent (Rule 13)
        bodies = [d.body for d in await store.pending_after(bob, 0, 1000) if d.sender != "bob"]
        mine = [b for b in bodies if b.startswith(f"{sender}:")]
        assert mine == [f"{sender}:{n}" for n in range(15)]
