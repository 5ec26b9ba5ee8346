"""Sends named the way the service names them (a tuple of names, the same tuple again and
again), where the in-memory store keeps each (sender, names) route and shares one set of ids
between the messages of a route (issue 10: fewer objects per send). Whatever it keeps, a name
that comes or goes, an ack and a deletion show exactly as in the SQLite file store: every
test runs against both."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio

from core.memory_store import MemoryStore
from core.store import SqliteStore, Store


@pytest_asyncio.fixture(params=["sqlite", "memory"])
async def store(request, tmp_path) -> AsyncIterator[Store]:
    opened: Store = SqliteStore(tmp_path / "s.db") if request.param == "sqlite" else MemoryStore()
    yield opened
    await opened.close()


async def accounts(store: Store, *names: str) -> list[int]:
    return [await store.create_account(name, f"hash-{name}", 0) for name in names]


async def history(store: Store, owner: int, conversation_id: int) -> list[str]:
    return [d.body for d in await store.read_history(owner, conversation_id, 0, 50)]


async def test_a_name_that_signs_up_after_a_send_gets_only_what_came_after(store):
    (al,) = await accounts(store, "al")
    lost = await store.add_message(al, "before", 1, ("ghost",))
    assert lost.message_id == 0
    (ghost,) = await accounts(store, "ghost")
    found = await store.add_message(al, "after", 2, ("ghost",))
    assert found.recipients == {"ghost": ghost} and found.message_id > 0
    assert [d.body for d in await store.pending_after(ghost, 0, 10)] == ["after"]


async def test_a_re_registered_name_gets_the_new_messages_and_nothing_of_the_old(store):
    al, old = await accounts(store, "al", "bob")
    await store.add_message(al, "to the old bob", 1, ("bob",))
    await store.delete_account(old, purge_sent=True, now_ms=2)
    assert (await store.add_message(al, "nobody", 3, ("bob",))).message_id == 0
    (new,) = await accounts(store, "bob")
    again = await store.add_message(al, "to the new bob", 4, ("bob",))
    assert new != old and again.recipients == {"bob": new}
    assert [d.body for d in await store.pending_after(new, 0, 10)] == ["to the new bob"]
    assert await history(store, new, again.conversation_id) == ["to the new bob"]


async def test_a_deleted_sender_stores_nothing_more(store):
    al, _bob = await accounts(store, "al", "bob")
    await store.add_message(al, "hi", 1, ("bob",))
    await store.delete_account(al, purge_sent=False, now_ms=2)
    assert (await store.add_message(al, "from beyond", 3, ("bob",))).message_id == 0


async def test_an_ack_by_one_recipient_keeps_the_other_copy_purgeable(store):
    al, bob, cy = await accounts(store, "al", "bob", "cy")
    first = await store.add_message(al, "one", 1, ("bob", "cy"))
    second = await store.add_message(al, "two", 2, ("bob", "cy"))
    await store.mark_delivered(bob, [first.message_id])
    removed = await store.delete_account(al, purge_sent=True, now_ms=3)
    # bob had acked "one": delivered, so it stays; every other copy was still pending
    assert sorted(removed.get(bob, [])) == [second.message_id]
    assert sorted(removed.get(cy, [])) == [first.message_id, second.message_id]
    assert await store.pending_after(bob, 0, 10) == []
    assert await store.pending_after(cy, 0, 10) == []
    assert await history(store, bob, first.conversation_id) == ["one"]
    assert await history(store, cy, first.conversation_id) == []


async def test_deleting_my_copy_leaves_the_others_until_the_last_goes(store):
    al, bob = await accounts(store, "al", "bob")
    sent = await store.add_message(al, "hi", 1, ("bob",))
    kept = await store.add_message(al, "still here", 2, ("bob",))
    assert await store.delete_messages(bob, [sent.message_id], for_everyone=False) == {
        bob: [sent.message_id]
    }
    assert await history(store, bob, sent.conversation_id) == ["still here"]
    assert await history(store, al, sent.conversation_id) == ["still here", "hi"]
    await store.delete_messages(al, [sent.message_id], for_everyone=False)
    assert await history(store, al, sent.conversation_id) == ["still here"]
    # once no one holds it, not even its sender can reach it for everyone
    assert await store.delete_messages(al, [sent.message_id], for_everyone=True) == {}
    assert (await store.add_message(al, "later", 3, ("bob",))).message_id > kept.message_id
