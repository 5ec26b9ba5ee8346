"""The PostgreSQL store's notice log (core.postgres_base), what makes read marks, deleted
ids and "end every session" repairable on a cluster's bus: each takes the user's next seq in
the transaction that makes it true, in one sequence with the user's deliveries, and is read
back by seq; the service's notice finds its seq (take_notice_seq)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)
import pytest_asyncio

from core import postgres_migrations
from core.postgres_store import PostgresStore
from core.store import SeqStore
from core.types import CloseReason, MessagesDeleted, ReadMarker
from wirechat.services import PostgresService


@pytest_asyncio.fixture
async def store(postgres: PostgresService) -> AsyncIterator[PostgresStore]:
    pg = await PostgresStore(postgres.url, pool_size=4).open()
    conn = await asyncpg.connect(postgres.url)
    try:
        await conn.execute(f"TRUNCATE {', '.join(postgres_migrations.TABLES)} RESTART IDENTITY")
    finally:
        await conn.close()
    pg.keep_notices("node-a")
    yield pg
    await pg.close()


async def test_notices_take_the_users_seqs_between_its_deliveries(store: PostgresStore):
    assert isinstance(store, SeqStore)
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    first = await store.add_message(al, "1", 1, ["bob"])
    mark, unread = await store.mark_read(bob, first.conversation_id, first.message_id)
    marker = ReadMarker(first.conversation_id, mark, unread)
    second = await store.add_message(al, "2", 2, ["bob"])
    removed = await store.delete_messages(bob, [first.message_id], for_everyone=False)
    gone = MessagesDeleted(tuple(removed[bob]))
    await store.revoke_resume_tokens(bob)
    third = await store.add_message(al, "3", 3, ["bob"])

    assert first.seqs[bob] == 1 and second.seqs[bob] == 3 and third.seqs[bob] == 6
    assert store.take_notice_seq(bob, marker) == 2
    assert store.take_notice_seq(bob, gone) == 4
    assert store.take_notice_seq(bob, CloseReason.PASSWORD_CHANGED) == 5
    assert store.take_notice_seq(bob, marker) == 0  # (asked once)
    assert await store.notices_by_seq(bob, 0, 6, 10) == [
        (2, marker, "node-a"),
        (4, gone, "node-a"),
        (5, CloseReason.PASSWORD_CHANGED, "node-a"),
    ]
    assert (await store.last_seqs([bob]))[bob] == (6, False)
    assert await store.prune_notices(2**62) == 3
    assert await store.notices_by_seq(bob, 0, 6, 10) == []


async def test_deleting_for_everyone_or_an_account_logs_each_holders_notice(store: PostgresStore):
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    cy = await store.create_account("cy", "h", 0)
    sent = await store.add_message(al, "to both", 1, ["bob", "cy"])
    removed = await store.delete_messages(al, [sent.message_id], for_everyone=True)
    assert set(removed) == {al, bob, cy}
    for owner in (al, bob, cy):
        notice = MessagesDeleted((sent.message_id,))
        seq = store.take_notice_seq(owner, notice)
        assert seq == (await store.last_seqs([owner]))[owner][0]
        assert await store.notices_by_seq(owner, seq - 1, seq, 1) == [(seq, notice, "node-a")]

    again = await store.add_message(al, "unread", 2, ["bob"])
    removed = await store.delete_account(al, purge_sent=True, now_ms=3)
    assert removed == {bob: [again.message_id]}
    notice = MessagesDeleted((again.message_id,))
    assert store.take_notice_seq(bob, notice) == again.seqs[bob] + 1


async def test_concurrent_sends_and_marks_take_distinct_consecutive_seqs(store: PostgresStore):
    bob = await store.create_account("bob", "h", 0)
    senders = [await store.create_account(f"s{i}", "h", 0) for i in range(4)]
    first = await store.add_message(senders[0], "hello", 0, ["bob"])

    async def send(sender: int) -> None:
        for n in range(10):
            await store.add_message(sender, f"{sender}:{n}", n, ["bob"])

    async def mark() -> None:
        for _ in range(10):
            await store.mark_read(bob, first.conversation_id, first.message_id)

    await asyncio.gather(*(send(s) for s in senders), mark())
    conn = await asyncpg.connect(store.dsn)
    try:
        seqs = [
            r[0] for r in await conn.fetch("SELECT seq FROM pending WHERE recipient_id = $1", bob)
        ]
        seqs += [r[0] for r in await conn.fetch("SELECT seq FROM notices WHERE owner_id = $1", bob)]
    finally:
        await conn.close()
    assert sorted(seqs) == list(range(1, 1 + 1 + 40 + 10))


async def test_a_store_not_told_to_keep_notices_logs_none(postgres: PostgresService, store):
    plain = await PostgresStore(postgres.url, pool_size=2).open()
    try:
        al = await plain.create_account("al", "h", 0)
        bob = await plain.create_account("bob", "h", 0)
        sent = await plain.add_message(al, "1", 1, ["bob"])
        mark, unread = await plain.mark_read(bob, sent.conversation_id, sent.message_id)
        assert plain.take_notice_seq(bob, ReadMarker(sent.conversation_id, mark, unread)) == 0
        assert (await plain.last_seqs([bob]))[bob] == (1, False)
        assert await plain.notices_by_seq(bob, 0, 10, 10) == []
    finally:
        await plain.close()
