"""Retention by count on SQLite (schema v4) selects a long history a page per loop turn.

One statement for every copy past an owner's limit held the event loop ~80 ms for an owner
with 100,000 messages, and sorting them all another ~100 ms (stop 27, a probe of
``prune_history``); every session on the server waited that long. ``past_limit`` pages them,
newest first, and the job hides them in the order they were found."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio

from core import sqlite_deletes
from core.sqlite_deletes import PRUNE_PAGE
from core.sqlite_store import SqliteStore

KEEP = 10
MESSAGES = 3 * PRUNE_PAGE + KEEP + 7  # past a limit of KEEP: three full pages and a part
PENDING = 5  # the newest few stay unacked by the recipient


@pytest_asyncio.fixture
async def store(tmp_path: Path) -> AsyncIterator[SqliteStore]:
    store = SqliteStore(tmp_path / "chat.db")
    await store.open()
    yield store
    await store.close()


async def long_history(store: SqliteStore) -> tuple[int, int, list[int]]:
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    stored = await asyncio.gather(
        *[store.add_message(al, f"m{i}", i, ["bob"]) for i in range(MESSAGES)]
    )
    ids = sorted(s.message_id for s in stored)
    await store.mark_delivered(bob, ids[:-PENDING])
    return al, bob, ids


async def test_the_copies_past_a_limit_come_a_page_at_a_time_newest_first(
    store: SqliteStore,
) -> None:
    al, bob, ids = await long_history(store)
    threshold = ids[-KEEP - 1]  # (the newest message past the limit)
    pages = list(sqlite_deletes.past_limit(store._db, al, threshold))
    assert [len(p) for p in pages] == [PRUNE_PAGE] * 3 + [7]
    got = [message_id for page in pages for owner, _, message_id in page if owner == al]
    assert got == sorted((i for i in ids if i <= threshold), reverse=True)
    # bob's unacked copies are never past a limit: they are not his history's to drop yet
    unacked = set(ids[-PENDING:])
    bobs = [m for page in sqlite_deletes.past_limit(store._db, bob, ids[-1]) for _, _, m in page]
    assert bobs == sorted(set(ids) - unacked, reverse=True)


async def test_a_long_history_is_pruned_to_its_limit_and_keeps_what_is_pending(
    store: SqliteStore,
) -> None:
    al, bob, ids = await long_history(store)
    pruned = await store.prune_history(max_per_user=KEEP, older_than_ms=None)
    assert pruned == 2 * (MESSAGES - KEEP)  # al's and bob's copies past their newest KEEP
    conversation = (await store.list_conversations(al, 0, 1))[0].conversation_id
    for owner in (al, bob):
        page = await store.read_history(owner, conversation, 0, 100)
        assert [d.message_id for d in page] == sorted(ids[-KEEP:], reverse=True)
    assert await store.pending_count(bob) == PENDING
