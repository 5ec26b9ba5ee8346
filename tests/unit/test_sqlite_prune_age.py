"""Retention by age on SQLite (schema v4) goes through the old messages a page per loop turn.

It read every old message's id in one statement and checked them all in one transaction:
for 100,000 old messages the loop stood still ~40 ms, and every send waited ~2.5 s for the
COMMIT (stop 28, a probe of ``prune_history``). ``past_age`` pages the old messages by id
window, whole messages until CHUNK copies have been looked at, and ``prune_old`` prunes
AGE_SPAN ids per transaction. What goes must not change: these tests hold the result to the
rule, worked out from the history before the prune."""

from __future__ import annotations

import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio

from core import sqlite_deletes
from core.sqlite_deletes import CHUNK
from core.sqlite_store import SqliteStore

MESSAGES = 240
OLD_BEFORE = 400  # sent_at_ms below it is old: about 40 % of them, scattered over the ids
WIDEST = 4  # members of the widest conversation (the group)

_Copy = tuple[int, int]  # (owner, message)
HELD = (
    "SELECT c.account_id, m.id FROM memberships c"
    " JOIN accounts a ON a.id = c.account_id AND a.deleted_at_ms IS NULL"
    " JOIN messages m ON m.conversation_id = c.conversation_id"
    " WHERE NOT EXISTS (SELECT 1 FROM hidden h"
    " WHERE h.owner_id = c.account_id AND h.message_id = m.id)"
)


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    """A store with a mixed history: four owners, two one-to-one conversations and a group,
    old and new messages interleaved (sent_at_ms is not in id order), some copies unacked,
    some deleted by their owner, and a member of the group deleted (holds nothing, its
    copies stay pending)."""
    opened = SqliteStore(tmp_path / "chat.db")
    await opened.open()
    try:
        await mixed_history(opened)
        yield opened
    finally:
        await opened.close()


async def mixed_history(store: SqliteStore) -> None:
    al, bob, cy, dee = [await store.create_account(n, "h", 0) for n in ("al", "bob", "cy", "dee")]
    talks = [(al, ["bob"]), (bob, ["cy"]), (cy, ["al", "bob", "dee"])]
    ids = []
    for i in range(MESSAGES):
        sender, to = talks[i % 3]
        stored = await store.add_message(sender, f"m{i}", (i * 7919) % 1000, to)
        ids.append(stored.message_id)
    for owner in (al, bob, cy):  # every third message stays unacked
        await store.mark_delivered(owner, [m for i, m in enumerate(ids) if i % 3 != 1])
    for owner in (al, bob):
        await store.delete_messages(owner, ids[5:40:7], for_everyone=False)
    await store.delete_account(dee, purge_sent=False, now_ms=1)


def state(db: sqlite3.Connection) -> tuple[set[_Copy], set[int], set[_Copy]]:
    """What a user can tell: the copies held, the message rows, the pending copies."""
    held = set(db.execute(HELD).fetchall())
    messages = {row[0] for row in db.execute("SELECT id FROM messages")}
    pending = set(db.execute("SELECT recipient_id, message_id FROM pending").fetchall())
    return held, messages, pending


def expected(
    db: sqlite3.Connection, max_per_user: int | None, older_than_ms: int | None
) -> tuple[int, tuple[set[_Copy], set[int], set[_Copy]]]:
    """The rule, from the state before the prune: a held copy goes if it is not pending and
    its message is old, or it is past its owner's newest ``max_per_user`` held copies; a
    message row goes (with its pending rows) when none of its copies is held any more."""
    held, messages, pending = state(db)
    sent = dict(db.execute("SELECT id, sent_at_ms FROM messages").fetchall())
    doomed = set()
    if older_than_ms is not None:
        doomed |= {c for c in held if c not in pending and sent[c[1]] < older_than_ms}
    if max_per_user is not None:
        for owner in {o for o, _ in held}:
            theirs = sorted((m for o, m in held if o == owner), reverse=True)
            doomed |= {(owner, m) for m in theirs[max_per_user:] if (owner, m) not in pending}
    left = held - doomed
    gone = {m for _, m in doomed} - {m for _, m in left}
    kept = {(o, m) for o, m in pending if m not in gone}
    return len(doomed), (left, messages - gone, kept)


async def test_old_messages_come_a_page_at_a_time(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "_ID_WINDOW", 64)
    db = store._db
    count, _ = expected(db, None, OLD_BEFORE)
    (last,) = db.execute("SELECT max(id) FROM messages").fetchone()
    pages = list(sqlite_deletes.past_age(db, store._cache, OLD_BEFORE, 0, last))
    # whole messages until CHUNK copies have been looked at: a page is never much more
    assert max(len(page) for page in pages) < CHUNK + WIDEST
    assert len(pages) >= count // (CHUNK + WIDEST)
    found = [(owner, message) for page in pages for owner, _, message in page]
    assert len(found) == len(set(found)) == count
    assert [m for _, m in found] == sorted(m for _, m in found)  # oldest message first


@pytest.mark.parametrize("span", [sqlite_deletes.AGE_SPAN, 50])
async def test_pruning_by_age_leaves_what_the_rule_says(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, span: int
) -> None:
    monkeypatch.setattr(sqlite_deletes, "AGE_SPAN", span)  # 50: five transactions
    monkeypatch.setattr(sqlite_deletes, "_ID_WINDOW", 16)
    count, after = expected(store._db, None, OLD_BEFORE)
    assert count > 2 * CHUNK
    assert await store.prune_history(max_per_user=None, older_than_ms=OLD_BEFORE) == count
    assert state(store._db) == after
    assert await store.prune_history(max_per_user=None, older_than_ms=OLD_BEFORE) == 0


async def test_pruning_by_age_and_count_together_leaves_what_the_rule_says(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "AGE_SPAN", 50)
    # (a limit counts the old copies too: pruning by age first would keep more)
    count, after = expected(store._db, 60, OLD_BEFORE)
    assert count > expected(store._db, None, OLD_BEFORE)[0]
    assert await store.prune_history(max_per_user=60, older_than_ms=OLD_BEFORE) == count
    assert state(store._db) == after
