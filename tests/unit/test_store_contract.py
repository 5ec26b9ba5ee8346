"""Both stores keep one contract: the SQLite file store users get and the dict store the bench's
``memory`` rows use. Every test runs against each."""

from __future__ import annotations

import pytest

from core.memory_store import MemoryStore
from core.store import DuplicateAccount, SqliteStore, Store


@pytest.fixture(params=["sqlite", "memory"])
def store(request, tmp_path) -> Store:
    return SqliteStore(tmp_path / "s.db") if request.param == "sqlite" else MemoryStore()


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


async def test_messages_pend_for_known_recipients_only_in_id_order(store):
    await store.create_account("bob", "h", 0)
    await store.create_account("cy", "h", 0)
    assert await store.add_message("al", "lost", 1, ["ghost"]) == (0, set())
    first, to = await store.add_message("al", "one", 2, ["bob", "ghost", "cy"])
    second, _ = await store.add_message("al", "two", 3, ["bob"])
    assert to == {"bob", "cy"} and 0 < first < second
    assert await store.pending_count("bob") == 2
    page = await store.pending_after("bob", 0, 1)
    rows = [(d.message_id, d.sender, d.body, d.sent_at_ms) for d in page]
    assert rows == [(first, "al", "one", 2)]
    assert [d.body for d in await store.pending_after("bob", first, 10)] == ["two"]
    await store.mark_delivered("bob", [first, 999])
    assert [d.body for d in await store.pending_after("bob", 0, 10)] == ["two"]
    assert [d.body for d in await store.pending_after("cy", 0, 10)] == ["one"]  # cy's copy stays


@pytest.mark.parametrize("purge", [True, False])
async def test_delete_account_removes_what_is_pending_to_it_and_maybe_what_it_sent(store, purge):
    for name in ["al", "bob"]:
        await store.create_account(name, "h", 0)
    await store.add_message("al", "from al", 1, ["bob"])
    await store.add_message("bob", "to al", 2, ["al"])
    await store.delete_account("al", purge_sent=purge)
    assert await store.password_hash("al") is None
    assert await store.list_accounts("*", "", 10) == ["bob"]
    assert await store.pending_count("al") == 0
    assert await store.pending_count("bob") == (0 if purge else 1)
    await store.create_account("al", "new", 3)  # the name is free again, with nothing pending
    assert await store.pending_count("al") == 0
