"""Every store keeps one contract: the SQLite file store users get, the dict store the bench's
``memory`` rows use, and the PostgreSQL store of a cluster (one database for the whole run,
emptied before each test). Every test runs against each."""

from __future__ import annotations

from collections.abc import AsyncIterator

import asyncpg
import pytest
import pytest_asyncio

from core import limits, postgres_migrations
from core.memory_store import MemoryStore
from core.postgres_store import PostgresStore
from core.store import DuplicateAccount, NotSender, SqliteStore, Store


@pytest_asyncio.fixture(params=["sqlite", "memory", "postgres"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    if request.param == "postgres":
        url = request.getfixturevalue("postgres").url
        pg = await PostgresStore(url, pool_size=2).open()
        conn = await asyncpg.connect(url)
        try:
            tables = ", ".join(postgres_migrations.TABLES)
            await conn.execute(f"TRUNCATE {tables} RESTART IDENTITY")
        finally:
            await conn.close()
        yield pg
        await pg.close()
        return
    yield SqliteStore(tmp_path / "s.db") if request.param == "sqlite" else MemoryStore()


async def accounts(store: Store, *names: str) -> list[int]:
    return [await store.create_account(name, f"hash-{name}", 0) for name in names]


async def test_accounts_are_unique_and_listed_sorted_by_glob_with_paging(store):
    for name in ["m3", "m1", "m2", "x.y", "xzy", "[a]"]:
        await store.create_account(name, f"hash-{name}", 0)
    with pytest.raises(DuplicateAccount):
        await store.create_account("m1", "other", 0)
    assert await store.password_hash("m1") == "hash-m1"
    assert await store.password_hash("nobody") is None
    assert await store.list_accounts("m*", "", 2) == ["m1", "m2"]
    assert await store.list_accounts("m*", "m2", 2) == ["m3"]
    assert await store.list_accounts("x?y", "", 10) == ["x.y", "xzy"]
    assert await store.list_accounts("[[]a]", "", 10) == ["[a]"]  # escaped '[' is literal


async def test_accounts_have_stable_distinct_ids(store):
    al, bob = await accounts(store, "al", "bob")
    assert 0 < al < bob
    found = await store.find_account("bob")
    assert found is not None and (found.id, found.username) == (bob, "bob")
    assert await store.account_ids(["bob", "ghost", "al"]) == {"al": al, "bob": bob}


async def test_messages_pend_for_known_recipients_only_in_id_order(store):
    al, bob, cy = await accounts(store, "al", "bob", "cy")
    lost = await store.add_message(al, "lost", 1, ["ghost"])
    assert (lost.message_id, lost.recipients) == (0, {})
    first = await store.add_message(al, "one", 2, ["bob", "ghost", "cy"])
    second = await store.add_message(al, "two", 3, ["bob"])
    assert first.recipients == {"bob": bob, "cy": cy}
    assert 0 < first.message_id < second.message_id
    assert first.conversation_id != second.conversation_id  # {al,bob,cy} vs {al,bob}
    assert await store.pending_count(bob) == 2
    assert await store.pending_count(al) == 0  # the sender's copy is history, not pending
    [delivery] = await store.pending_after(bob, 0, 1)
    assert delivery.message_id == first.message_id
    assert (delivery.sender, delivery.body, delivery.sent_at_ms) == ("al", "one", 2)
    assert delivery.participants == ("al", "cy")  # Rule 21: the others, as bob sees it
    assert delivery.conversation_id == first.conversation_id and not delivery.sender_deleted
    assert [d.body for d in await store.pending_after(bob, first.message_id, 10)] == ["two"]
    await store.mark_delivered(bob, [first.message_id, 999])
    assert [d.body for d in await store.pending_after(bob, 0, 10)] == ["two"]
    assert [d.body for d in await store.pending_after(cy, 0, 10)] == ["one"]  # cy's copy stays


async def test_a_conversation_is_its_set_of_participants(store):
    al, bob = await accounts(store, "al", "bob")
    one = await store.add_message(al, "hi", 1, ["bob"])
    back = await store.add_message(bob, "hello", 2, ["al"])
    both = await store.add_message(al, "to us", 3, ["al", "bob"])  # self included: same set
    note = await store.add_message(al, "note", 4, ["al"])
    assert one.conversation_id == back.conversation_id == both.conversation_id
    assert await store.conversation_of({al, bob}) == one.conversation_id
    assert note.conversation_id != one.conversation_id
    assert await store.conversation_of({bob}) == 0
    assert [(m.username, m.deleted) for m in await store.members(one.conversation_id)] == [
        ("al", False),
        ("bob", False),
    ]
    [own_note] = await store.read_history(al, note.conversation_id, 0, 10)
    assert own_note.participants == ()


async def test_history_keeps_sent_and_received_copies_after_ack_newest_first(store):
    al, bob = await accounts(store, "al", "bob")
    ids = [(await store.add_message(al, f"m{i}", i, ["bob"])).message_id for i in range(5)]
    reply = await store.add_message(bob, "reply", 9, ["al"])
    await store.mark_delivered(bob, ids)
    conversation = reply.conversation_id
    for owner in (al, bob):
        page = await store.read_history(owner, conversation, 0, 3)
        assert [d.body for d in page] == ["reply", "m4", "m3"]
        older = await store.read_history(owner, conversation, page[-1].message_id, 10)
        assert [d.body for d in older] == ["m2", "m1", "m0"]
    assert (await store.read_history(bob, conversation, 0, 1))[0].participants == ("al",)


async def test_conversations_are_listed_most_recent_first_with_unread_counts(store):
    al, bob, cy = await accounts(store, "al", "bob", "cy")
    with_bob = await store.add_message(bob, "b1", 1, ["al"])
    await store.add_message(bob, "b2", 2, ["al"])
    group = await store.add_message(cy, "group", 3, ["al", "bob"])
    mine = await store.add_message(al, "mine", 4, ["cy"])
    found = await store.list_conversations(al, 0, 10)
    assert [c.participants for c in found] == [("cy",), ("bob", "cy"), ("bob",)]
    assert [c.last_message.body for c in found] == ["mine", "group", "b2"]
    assert [c.unread for c in found] == [0, 1, 2]  # your own messages are never unread
    assert found[2].conversation_id == with_bob.conversation_id
    assert [c.participants for c in await store.list_conversations(al, 0, 1)] == [("cy",)]
    rest = await store.list_conversations(al, mine.message_id, 10)
    assert [c.conversation_id for c in rest] == [group.conversation_id, with_bob.conversation_id]
    assert await store.list_conversations(bob, 0, 10) != []


async def test_read_marks_only_rise_and_stop_at_the_last_message(store):
    al, bob = await accounts(store, "al", "bob")
    first = await store.add_message(bob, "one", 1, ["al"])
    second = await store.add_message(bob, "two", 2, ["al"])
    conversation = first.conversation_id
    assert await store.mark_read(al, conversation, first.message_id) == (first.message_id, 1)
    assert await store.mark_read(al, conversation, 0) == (first.message_id, 1)  # never lower
    assert await store.mark_read(al, conversation, 2**62) == (second.message_id, 0)
    third = await store.add_message(bob, "three", 3, ["al"])
    assert await store.read_up_to(al, conversation) == second.message_id
    [listed] = await store.list_conversations(al, 0, 10)
    assert (listed.unread, listed.read_up_to) == (1, second.message_id)
    assert await store.pending_count(al) == 3  # read is not delivered (Rule 22)
    assert third.message_id > second.message_id


async def test_delete_for_me_touches_only_my_history_and_my_pending_copy(store):
    al, bob = await accounts(store, "al", "bob")
    message = await store.add_message(al, "oops", 1, ["bob"])
    mid, conversation = message.message_id, message.conversation_id
    assert await store.delete_messages(bob, [mid, 12345], for_everyone=False) == {bob: [mid]}
    assert await store.read_history(bob, conversation, 0, 10) == []
    assert await store.pending_count(bob) == 0  # not delivered later either
    assert [d.body for d in await store.read_history(al, conversation, 0, 10)] == ["oops"]
    assert await store.delete_messages(al, [mid], for_everyone=False) == {al: [mid]}
    assert await store.read_history(al, conversation, 0, 10) == []
    assert await store.list_conversations(al, 0, 10) == []


async def test_delete_for_everyone_is_the_senders_right_alone(store):
    al, bob, cy = await accounts(store, "al", "bob", "cy")
    message = await store.add_message(al, "to all", 1, ["bob", "cy"])
    mid = message.message_id
    await store.mark_delivered(bob, [mid])
    with pytest.raises(NotSender):
        await store.delete_messages(bob, [mid], for_everyone=True)
    assert await store.pending_count(cy) == 1  # a refused request changes nothing
    removed = await store.delete_messages(al, [mid], for_everyone=True)
    assert removed == {al: [mid], bob: [mid], cy: [mid]}
    for owner in (al, bob, cy):
        assert await store.read_history(owner, message.conversation_id, 0, 10) == []
    assert await store.pending_count(cy) == 0
    # Someone else's message you do not hold is not yours to know about: ignored.
    other = await store.add_message(bob, "private", 2, ["cy"])
    assert await store.delete_messages(al, [other.message_id], for_everyone=True) == {}


@pytest.mark.parametrize("purge", [True, False])
async def test_delete_account_removes_what_is_pending_to_it_and_maybe_what_it_sent(store, purge):
    al, bob = await accounts(store, "al", "bob")
    await store.add_message(al, "from al", 1, ["bob"])
    await store.add_message(bob, "to al", 2, ["al"])
    removed = await store.delete_account(al, purge_sent=purge, now_ms=5)
    assert await store.password_hash("al") is None
    assert await store.list_accounts("*", "", 10) == ["bob"]
    assert await store.pending_count(al) == 0
    assert await store.pending_count(bob) == (0 if purge else 1)
    assert bool(removed) is purge
    new_al = await store.create_account("al", "new", 3)  # the name is free again
    assert new_al != al
    assert await store.pending_count(new_al) == 0
    assert await store.list_conversations(new_al, 0, 10) == []  # inherits nothing (Rule 19)


async def test_a_deleted_senders_delivered_messages_stay_marked_as_such(store):
    al, bob = await accounts(store, "al", "bob")
    sent = await store.add_message(al, "delivered", 1, ["bob"])
    await store.mark_delivered(bob, [sent.message_id])
    kept = await store.add_message(al, "pending", 2, ["bob"])
    await store.delete_account(al, purge_sent=True, now_ms=3)
    new_al = await store.create_account("al", "new", 4)
    [copy] = await store.read_history(bob, sent.conversation_id, 0, 10)
    assert (copy.body, copy.sender, copy.sender_deleted) == ("delivered", "al", True)
    assert kept.message_id not in [d.message_id for d in await store.pending_after(bob, 0, 10)]
    [listed] = await store.list_conversations(bob, 0, 10)
    assert listed.deleted_participants == ("al",)
    fresh = await store.add_message(new_al, "hi, I'm new", 5, ["bob"])
    assert fresh.conversation_id != sent.conversation_id  # a new account, a new conversation
    [delivery] = await store.pending_after(bob, 0, 10)
    assert (delivery.sender, delivery.sender_deleted) == ("al", False)


async def test_keep_policy_delivers_a_deleted_senders_messages_marked_deleted(store):
    al, bob = await accounts(store, "al", "bob")
    await store.add_message(al, "kept", 1, ["bob"])
    await store.delete_account(al, purge_sent=False, now_ms=2)
    await store.create_account("al", "new", 3)
    [delivery] = await store.pending_after(bob, 0, 10)
    assert (delivery.body, delivery.sender, delivery.sender_deleted) == ("kept", "al", True)


async def test_retention_prunes_old_and_excess_history_but_never_a_pending_copy(store):
    al, bob = await accounts(store, "al", "bob")
    ids = [(await store.add_message(al, f"m{i}", i * 1000, ["bob"])).message_id for i in range(6)]
    await store.mark_delivered(bob, ids[:4])  # m4, m5 still pending to bob
    conversation = (await store.list_conversations(al, 0, 1))[0].conversation_id
    pruned = await store.prune_history(max_per_user=None, older_than_ms=2000)  # m0, m1
    assert pruned == 4  # al's and bob's copies of m0 and m1
    assert [d.body for d in await store.read_history(bob, conversation, 0, 10)] == [
        "m5",
        "m4",
        "m3",
        "m2",
    ]
    pruned = await store.prune_history(max_per_user=1, older_than_ms=None)
    assert [d.body for d in await store.read_history(al, conversation, 0, 10)] == ["m5"]
    # bob keeps m4 beyond the limit: it is still pending (undelivered) to him.
    assert [d.body for d in await store.read_history(bob, conversation, 0, 10)] == ["m5", "m4"]
    assert pruned == 3 + 2
    assert await store.pending_count(bob) == 2


# -- resume tokens and password changes (issue 13) ----------------------------------------------


def token(n: int) -> bytes:
    """A stand-in for a token's SHA-256 (the store sees only the hash)."""
    return n.to_bytes(32, "big")


async def test_a_resume_token_names_its_live_account_until_it_expires(store):
    al, bob = await accounts(store, "al", "bob")
    await store.add_resume_token(al, token(1), 1_000)
    await store.add_resume_token(bob, token(2), 2_000)
    assert await store.resume_account(token(1), 999) == (al, "al")
    assert await store.resume_account(token(2), 999) == (bob, "bob")
    assert await store.resume_account(token(3), 0) is None  # never issued
    assert await store.resume_account(token(1), 1_000) is None  # expired at its time
    assert await store.resume_account(token(1), 0) is None  # and forgotten since


async def test_revoking_one_token_or_all_of_an_account(store):
    al, bob = await accounts(store, "al", "bob")
    for n, owner in [(1, al), (2, al), (3, al), (4, bob)]:
        await store.add_resume_token(owner, token(n), 10_000)
    await store.revoke_resume_token(token(1))
    await store.revoke_resume_token(token(99))  # unknown: ignored
    assert await store.resume_account(token(1), 0) is None
    assert await store.resume_account(token(2), 0) == (al, "al")
    await store.revoke_resume_tokens(al)
    assert [await store.resume_account(token(n), 0) for n in (2, 3)] == [None, None]
    assert await store.resume_account(token(4), 0) == (bob, "bob")  # another account's stays


async def test_deleting_an_account_deletes_its_tokens(store):
    al, bob = await accounts(store, "al", "bob")
    await store.add_resume_token(al, token(1), 10_000)
    await store.add_resume_token(bob, token(2), 10_000)
    await store.delete_account(al, purge_sent=True, now_ms=5)
    assert await store.resume_account(token(1), 0) is None
    again = await store.create_account("al", "hash-new", 6)  # the name's next owner
    assert again != al and await store.resume_account(token(1), 0) is None
    assert await store.resume_account(token(2), 0) == (bob, "bob")


async def test_an_account_holds_a_bounded_number_of_tokens_the_oldest_go_first(store, monkeypatch):
    monkeypatch.setattr(limits, "MAX_RESUME_TOKENS_PER_ACCOUNT", 3)
    (al,) = await accounts(store, "al")
    for n in range(1, 6):
        await store.add_resume_token(al, token(n), 1_000 + n)
    alive = [n for n in range(1, 6) if await store.resume_account(token(n), 0)]
    assert alive == [3, 4, 5]


async def test_set_password_hash_replaces_a_live_accounts_hash_only(store):
    al, bob = await accounts(store, "al", "bob")
    await store.set_password_hash(al, "hash-changed")
    assert await store.password_hash("al") == "hash-changed"
    assert await store.password_hash("bob") == "hash-bob"
    await store.delete_account(bob, purge_sent=True, now_ms=1)
    await store.set_password_hash(bob, "hash-revived")  # a tombstone stays without one
    assert await store.password_hash("bob") is None
    assert await store.find_account("bob") is None


async def test_tokens_survive_reopening_a_file_store(tmp_path):
    path = tmp_path / "tokens.db"
    first = SqliteStore(path)
    al = await first.create_account("al", "hash-al", 0)
    await first.add_resume_token(al, token(7), 10_000)
    await first.close()
    second = SqliteStore(path)
    try:
        assert await second.resume_account(token(7), 0) == (al, "al")
    finally:
        await second.close()


async def test_tokens_survive_reopening_a_postgres_store(postgres):
    first = await PostgresStore(postgres.url, pool_size=1).open()
    try:
        al = await first.create_account("token-keeper", "hash", 0)
        await first.add_resume_token(al, token(8), 10_000)
    finally:
        await first.close()
    second = await PostgresStore(postgres.url, pool_size=1).open()
    try:
        assert await second.resume_account(token(8), 0) == (al, "token-keeper")
        await second.delete_account(al, purge_sent=True, now_ms=1)  # leave the name free
    finally:
        await second.close()
