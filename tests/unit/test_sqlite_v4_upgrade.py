"""Schema v4 (issue 10): a message is indexed once by its conversation instead of a history row
per copy. A v3 file upgrades in place and every owner sees exactly the history v3 showed them:
the copies they had deleted for themselves, pruned, or never got (a deleted account's) stay
gone, everything else stays, pending messages still arrive, and the store goes on from there."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from core import migrations
from core.migrations import version
from core.sqlite_store import SqliteStore

# Accounts (id, name, deleted_at_ms) and conversations (id, members) as v3 left them.
ACCOUNTS = [(1, "al", None), (2, "bob", None), (3, "cy", None), (4, "dee", 900)]
CONVERSATIONS = [(1, "1,2"), (2, "1,2,3"), (3, "1"), (4, "2,4")]
# (id, sender, conversation, body): dee (4) deleted her account, her copies went with it.
MESSAGES = [
    (1, 1, 1, "al to bob"),
    (2, 2, 1, "bob to al, deleted by bob for himself"),
    (3, 1, 2, "al to the group, pruned from al's history"),
    (4, 3, 2, "cy to the group"),
    (5, 1, 3, "al's note to self"),
    (6, 4, 4, "dee to bob, before she left"),
    (7, 1, 1, "al to bob, still pending"),
]
# v3's history rows: every copy but bob's of 2, al's of 3, and any of dee's.
HISTORY = [
    (1, 1, 1),
    (2, 1, 1),
    (1, 1, 2),
    (2, 2, 3),
    (3, 2, 3),
    (1, 2, 4),
    (2, 2, 4),
    (3, 2, 4),
    (1, 3, 5),
    (2, 4, 6),
    (1, 1, 7),
    (2, 1, 7),
]


def write_v3_database(path: Path) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    for migration in migrations.MIGRATIONS[:3]:
        migration(db)
    db.execute("PRAGMA user_version=3")
    db.executemany(
        "INSERT INTO accounts(id, username, password_hash, created_at_ms, deleted_at_ms)"
        " VALUES (?, ?, 'h', 0, ?)",
        ACCOUNTS,
    )
    db.executemany("INSERT INTO conversations(id, members) VALUES (?, ?)", CONVERSATIONS)
    db.executemany(
        "INSERT INTO messages(id, sender_id, conversation_id, body, sent_at_ms)"
        " VALUES (?, ?, ?, ?, 100)",
        MESSAGES,
    )
    db.executemany("INSERT INTO history VALUES (?, ?, ?)", HISTORY)
    db.execute("INSERT INTO pending VALUES (2, 7)")
    db.execute("INSERT INTO read_state VALUES (2, 2, 3)")
    db.close()


def v3_history(path: Path) -> dict[tuple[int, int], list[int]]:
    """What v3 showed each owner: its history rows, per conversation, newest first."""
    db = sqlite3.connect(path)
    seen: dict[tuple[int, int], list[int]] = {}
    for owner, conversation, message_id in db.execute(
        "SELECT owner_id, conversation_id, message_id FROM history ORDER BY message_id DESC"
    ):
        seen.setdefault((owner, conversation), []).append(message_id)
    db.close()
    return seen


async def test_a_v3_file_upgrades_and_each_owner_sees_the_history_v3_showed(tmp_path: Path):
    path = tmp_path / "v3.db"
    write_v3_database(path)
    before = v3_history(path)
    store = SqliteStore(path)
    assert version(store._db) == migrations.LATEST == 4
    tables = {row[0] for row in store._db.execute("SELECT name FROM sqlite_master")}
    assert "history" not in tables and {"memberships", "hidden"} <= tables
    after: dict[tuple[int, int], list[int]] = {}
    for owner, _, _ in ACCOUNTS:
        for conversation, _ in CONVERSATIONS:
            got = await store.read_history(owner, conversation, 0, 100)
            if got:
                after[(owner, conversation)] = [d.message_id for d in got]
    assert after == before
    # (not vacuous: the copies v3 lacked are missing, the others are there)
    assert after[(2, 1)] == [7, 1] and after[(1, 2)] == [4] and after[(2, 2)] == [4, 3]
    assert await store.read_history(4, 4, 0, 100) == []  # dee's went with her account
    al = await store.list_conversations(1, 0, 100)
    assert [(c.conversation_id, c.last_message.message_id) for c in al] == [(1, 7), (3, 5), (2, 4)]
    bob = {c.conversation_id: c for c in await store.list_conversations(2, 0, 100)}
    assert {c: (bob[c].unread, bob[c].read_up_to) for c in bob} == {
        1: (2, 0),
        2: (1, 3),
        4: (1, 0),
    }
    [pending] = await store.pending_after(2, 0, 100)
    assert (pending.message_id, pending.body) == (7, "al to bob, still pending")
    await store.close()


async def test_after_the_upgrade_deletes_and_sends_work_on_the_migrated_copies(tmp_path: Path):
    path = tmp_path / "v3.db"
    write_v3_database(path)
    store = SqliteStore(path)
    # 3 is held by bob and cy only (al's copy was pruned): once both drop it, the row goes.
    assert await store.delete_messages(2, [3], False) == {2: [3]}
    assert await store.delete_messages(3, [3], False) == {3: [3]}
    # 2 was hidden from bob (he deleted it for himself): once al drops it too, the row goes.
    assert await store.delete_messages(1, [2], False) == {1: [2]}
    # The sender deletes 4 for everyone: every holder is told.
    assert await store.delete_messages(3, [4], True) == {1: [4], 2: [4], 3: [4]}
    db = sqlite3.connect(path)
    assert [row[0] for row in db.execute("SELECT id FROM messages ORDER BY id")] == [1, 5, 6, 7]
    assert db.execute("SELECT count(*) FROM hidden").fetchone()[0] == 0  # they went too
    db.close()
    stored = await store.add_message(1, "after the upgrade", 200, ("bob",))
    assert stored.message_id == 8 and stored.conversation_id == 1
    for owner in (1, 2):
        assert [d.message_id for d in await store.read_history(owner, 1, 0, 100)] == [8, 7, 1]
    await store.close()


async def test_history_reads_that_outrun_the_loop_budget_finish_on_the_scan_thread(
    tmp_path: Path, monkeypatch
):
    """v4's history reads skip the messages hidden from the owner; a user who deleted most
    of a long conversation for themselves makes that a long walk. Past the loop's budget
    the read is run again on the scan thread (as list_accounts' scans are), same answer."""
    from core import sqlite_store

    store = SqliteStore(tmp_path / "hidden.db")
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    sent = [await store.add_message(al, f"m{i}", i, ("bob",)) for i in range(300)]
    conversation = sent[0].conversation_id
    ids = [s.message_id for s in sent]
    await store.mark_delivered(bob, ids)
    await store.delete_messages(bob, ids[2:-1], False)  # bob keeps the first two and the last
    expected = {
        "history": [ids[-1], ids[1], ids[0]],
        "page": [ids[1], ids[0]],
        "last": ids[-1],
        "unread": 3,
    }

    async def seen() -> dict[str, object]:
        [listed] = await store.list_conversations(bob, 0, 10)
        return {
            "history": [d.message_id for d in await store.read_history(bob, conversation, 0, 10)],
            "page": [
                d.message_id for d in await store.read_history(bob, conversation, ids[-1], 10)
            ],
            "last": listed.last_message.message_id,
            "unread": listed.unread,
        }

    assert await seen() == expected  # on the loop
    scans = []
    real_scan = store._scan
    monkeypatch.setattr(store, "_scan", lambda q, a: scans.append(q) or real_scan(q, a))
    monkeypatch.setattr(sqlite_store, "LIST_BUDGET_S", 0.0)
    monkeypatch.setattr(sqlite_store, "_PROGRESS_STEPS", 1)
    assert await seen() == expected  # every read interrupted on the loop, done on the thread
    assert len(scans) >= 4
    await store.close()
