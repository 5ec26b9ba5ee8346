"""The SQLite store's caches and its lone-send path (issue 10): who exists is cached for
sends, and the cache never lets a message reach an account that is gone or was never
committed; one send in flight after a burst is committed at once again."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from core.sqlite_store import SqliteStore
from core.sqlite_writer import LONE_GROUPS_TO_GO_ALONE, WriteFailed


async def _store(tmp_path: Path) -> tuple[SqliteStore, int, int]:
    store = SqliteStore(tmp_path / "c.db")
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    return store, al, bob


async def test_a_re_registered_name_receives_under_its_new_account_only(tmp_path):
    store, al, bob = await _store(tmp_path)
    await store.add_message(al, "to the first bob", 1, ["bob"])  # (bob is now cached)
    await store.delete_account(bob, purge_sent=True, now_ms=2)
    gone = await store.add_message(al, "to nobody", 3, ["bob"])
    assert gone.message_id == 0 and gone.recipients == {}
    bob2 = await store.create_account("bob", "h2", 4)
    sent = await asyncio.gather(*(store.add_message(al, f"m{i}", 5, ["bob"]) for i in range(5)))
    assert {s.recipients["bob"] for s in sent} == {bob2}
    assert await store.pending_count(bob2) == 5
    assert await store.pending_count(bob) == 0
    await store.close()


async def test_a_name_seen_only_in_a_rolled_back_group_is_not_a_recipient(tmp_path):
    store, al, bob = await _store(tmp_path)

    def no_commit(action: int, arg1: object, *_: object) -> int:
        deny = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
        return sqlite3.SQLITE_DENY if deny else sqlite3.SQLITE_OK

    store._db.set_authorizer(no_commit)  # COMMIT fails, as a full disk would make it
    outcomes = await asyncio.gather(
        store.create_account("cy", "h", 1),
        *(store.add_message(al, f"m{i}", 2, ["cy", "bob"]) for i in range(4)),
        return_exceptions=True,
    )
    assert all(isinstance(o, WriteFailed) for o in outcomes)
    store._db.set_authorizer(None)
    later = await store.add_message(al, "again", 3, ["cy", "bob"])
    assert later.recipients == {"bob": bob}  # cy was never created
    assert await store.find_account("cy") is None
    await store.close()


async def test_one_send_in_flight_after_a_burst_is_committed_at_once_again(tmp_path):
    store, al, _ = await _store(tmp_path)
    await asyncio.gather(*(store.add_message(al, f"burst {i}", 1, ["bob"]) for i in range(40)))
    loop = asyncio.get_running_loop()
    waited = []
    for i in range(LONE_GROUPS_TO_GO_ALONE + 3):
        turned: list[bool] = []
        loop.call_soon(turned.append, True)  # runs only if the send waits for the loop
        await store.add_message(al, f"alone {i}", 2, ["bob"])
        waited.append(bool(turned))
        await asyncio.sleep(0)  # the next send comes in a later loop turn
    assert waited[0] is True  # right after the burst: it waits for a group of its own
    assert waited[-3:] == [False, False, False]  # committed on the spot, no loop trip
    await store.close()
