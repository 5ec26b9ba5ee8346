"""The copies a group of sends leaves in the SQLite store (issue 10: core/sqlite_send.py
writes each message once, indexed by its conversation, which is every member's history copy
(schema v4), and its pending copies with multi-row INSERT OR ROLLBACK). Every participant
ends up with exactly the copies the in-memory store gives them, whatever mix of sends shares
the group; and a row that cannot be stored fails the whole group, leaves nothing of it, and
the store goes on."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

from core.memory_store import MemoryStore
from core.sqlite_store import SqliteStore
from core.sqlite_writer import WriteFailed
from core.store import Store

NAMES = ("al", "bob", "cy", "dee")
#: (sender, recipients): one-to-one, a group, notes to self, the sender among others, an
#: unknown name beside a known one, only unknown names.
SENDS = (
    ("al", ("bob",)),
    ("al", ("bob", "cy")),
    ("bob", ("bob",)),
    ("al", ("al", "bob")),
    ("cy", ("al", "ghost")),
    ("dee", ("ghost",)),
    ("bob", ("al",)),
    ("cy", ("bob", "cy", "dee")),
)


async def _everything(store: Store, ids: dict[str, int]) -> dict[str, object]:
    """Each user's history (per conversation, oldest first) and pending messages."""
    seen: dict[str, object] = {}
    for name, account_id in ids.items():
        history = []
        for conversation in await store.list_conversations(account_id, 0, 100):
            got = await store.read_history(account_id, conversation.conversation_id, 0, 100)
            history.append(sorted((d.body, d.sender, d.participants) for d in got))
        seen[f"{name} history"] = sorted(history)
        pending = await store.pending_after(account_id, 0, 100)
        seen[f"{name} pending"] = [(d.body, d.sender, d.participants) for d in pending]
    return seen


async def _send_all(store: Store, ids: dict[str, int], rounds: int) -> list[int]:
    """SENDS, ``rounds`` times over, all at once: they share a group (the first may go alone)."""
    sends = [
        store.add_message(ids[sender], f"{sender}->{'+'.join(to)} #{i}", i, to)
        for i in range(rounds)
        for sender, to in SENDS
    ]
    return [stored.message_id for stored in await asyncio.gather(*sends)]


async def test_a_mixed_group_leaves_each_user_the_copies_the_memory_store_does(tmp_path: Path):
    results = []
    for store in (MemoryStore(), SqliteStore(tmp_path / "copies.db")):
        ids = {name: await store.create_account(name, "h", 0) for name in NAMES}
        message_ids = await _send_all(store, ids, rounds=3)
        assert message_ids.count(0) == 3  # only the sends to nobody stored nothing
        results.append(await _everything(store, ids))
        await store.close()
    memory, sqlite = results
    assert sqlite == memory
    # (and the check is not vacuous: a note to self is one copy, a group message one each)
    assert len(memory["bob history"]) == 4  # type: ignore[arg-type]


async def test_a_row_that_cannot_be_stored_fails_its_group_and_leaves_nothing(tmp_path: Path):
    path = tmp_path / "taken.db"
    store = SqliteStore(path)
    ids = {name: await store.create_account(name, "h", 0) for name in NAMES}
    first = await store.add_message(ids["al"], "before", 0, ("bob",))
    al, bob, conversation = ids["al"], ids["bob"], first.conversation_id
    # Rows the next messages' copies collide with (no code writes such rows: this stands
    # for a bug, or a file damaged by hand): whatever id the next send gets, it cannot be
    # stored, and SQLite rolls the group back by itself (OR ROLLBACK).
    upcoming = range(first.message_id + 1, first.message_id + 40)
    with sqlite3.connect(path, isolation_level=None) as other:
        other.executemany("INSERT INTO pending VALUES (?, ?)", [(bob, m) for m in upcoming])
    outcomes = await asyncio.gather(
        *(store.add_message(al, f"lost {i}", i, ("bob",)) for i in range(12)),
        return_exceptions=True,
    )
    assert all(isinstance(outcome, WriteFailed) for outcome in outcomes), outcomes
    assert not store._db.in_transaction
    with sqlite3.connect(path) as other:
        assert other.execute("SELECT count(*) FROM messages").fetchone()[0] == 1
        other.execute("DELETE FROM pending WHERE message_id > ?", (first.message_id,))
    assert [d.body for d in await store.pending_after(bob, 0, 100)] == ["before"]
    # The store goes on: the next group is stored whole, each copy where it belongs.
    again = await asyncio.gather(
        *(store.add_message(al, f"kept {i}", i, ("bob",)) for i in range(5))
    )
    assert all(stored.message_id for stored in again)
    kept = ["before", *(f"kept {i}" for i in range(5))]
    assert [d.body for d in await store.pending_after(bob, 0, 100)] == kept
    for owner in (al, bob):
        history = await store.read_history(owner, conversation, 0, 100)
        assert [d.body for d in history] == kept[::-1]
    await store.close()
