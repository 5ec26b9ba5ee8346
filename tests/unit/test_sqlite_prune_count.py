"""Retention by count on SQLite (schema v4) commits in parts: a send does not wait for it all.

It pruned every owner's copies past the limit in one transaction, and kept them all in one
dict until the end: every send waited for the whole prune (~0.6 s for 20,000 messages, ~3 s
for 100,000: stop 29, a probe of ``prune_history``), and an OFFSET of the limit read that
many copies in one statement (~40 ms on the loop for 50,000). ``prune_past_limit`` now hides
each owner's copies as it finds them, COUNT_SPAN per transaction, and finds an owner's
newest copy past the limit PRUNE_PAGE copies a loop turn. What goes must not change: these
tests hold the result to the rule, worked out from the history before the prune
(``expected``, shared with the age tests)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from core import sqlite_deletes
from core.sqlite_deletes import NOT_HIDDEN
from core.sqlite_store import SqliteStore
from tests.unit import test_sqlite_prune_age
from tests.unit.test_sqlite_prune_age import OLD_BEFORE, expected, mixed_history, state

DEADLINE_S = 30.0
#: The age tests' store: four owners, a group, unacked copies, copies deleted by their owner,
#: a deleted member.
store = test_sqlite_prune_age.store


@pytest.mark.parametrize("limit", [1, 7, 60, 1000])
@pytest.mark.parametrize(("span", "page"), [(4_096, 500), (16, 5)])
async def test_pruning_by_count_leaves_what_the_rule_says(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch, limit: int, span: int, page: int
) -> None:
    # (16 copies a transaction and pages of 5: many parts, an owner's copies split across
    # them, the newest copy past the limit found over several steps)
    monkeypatch.setattr(sqlite_deletes, "COUNT_SPAN", span, raising=False)
    monkeypatch.setattr(sqlite_deletes, "PRUNE_PAGE", page)
    count, after = expected(store._db, limit, None)
    assert await store.prune_history(max_per_user=limit, older_than_ms=None) == count
    assert state(store._db) == after
    assert await store.prune_history(max_per_user=limit, older_than_ms=None) == 0
    assert state(store._db) == after


async def test_pruning_by_count_and_age_in_small_parts_leaves_what_the_rule_says(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "COUNT_SPAN", 16, raising=False)
    monkeypatch.setattr(sqlite_deletes, "AGE_SPAN", 50)
    count, after = expected(store._db, 60, OLD_BEFORE)
    assert await store.prune_history(max_per_user=60, older_than_ms=OLD_BEFORE) == count
    assert state(store._db) == after


async def test_the_newest_copy_past_the_limit_is_found_a_page_at_a_time(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "PRUNE_PAGE", 5)
    db = store._db
    owners = [row[0] for row in db.execute("SELECT DISTINCT account_id FROM memberships")]
    for owner in owners:
        for keep in (1, 4, 5, 6, 23, 159, 160, 161, 500):
            (offset,) = db.execute(
                "SELECT coalesce((SELECT m.id FROM memberships c"
                " JOIN messages m ON m.conversation_id = c.conversation_id"
                f" WHERE c.account_id = ? AND {NOT_HIDDEN}"
                " ORDER BY m.id DESC LIMIT 1 OFFSET ?), 0)",
                (owner, owner, keep),
            ).fetchone()
            steps = sqlite_deletes.past_newest(db, owner, keep)
            turns = 0
            try:
                while True:
                    next(steps)
                    turns += 1
            except StopIteration as done:
                assert done.value == offset
            if offset:  # a loop turn between steps of PRUNE_PAGE copies
                assert turns == (keep - 1) // 5


async def test_a_send_during_a_long_prune_is_stored_before_the_prune_ends(
    store: SqliteStore, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "COUNT_SPAN", 16, raising=False)
    al = await store.find_account("al")
    assert al is not None
    held = len(state(store._db)[0])  # (the reader's view: what is committed)
    pruning = asyncio.create_task(store.prune_history(max_per_user=1, older_than_ms=None))
    deadline = time.monotonic() + DEADLINE_S
    while len(state(store._db)[0]) == held:  # until the prune has committed something
        assert time.monotonic() < deadline and not pruning.done(), "the prune did nothing"
        await asyncio.sleep(0)
    sent = await store.add_message(al.id, "during", 10**6, ["bob"])
    held_at_send = len(state(store._db)[0])
    await pruning
    # the send was stored while copies the prune drops were still held (committed): it
    # did not wait for the whole prune
    assert held_at_send > len(state(store._db)[0])
    # al's newest copy, whether al's part of the prune came before the send or after it
    conversation = (await store.list_conversations(al.id, 0, 10))[0].conversation_id
    history = await store.read_history(al.id, conversation, 0, 10)
    assert history[0].message_id == sent.message_id


async def test_a_prune_cut_short_leaves_a_state_the_next_prune_finishes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sqlite_deletes, "COUNT_SPAN", 16, raising=False)
    path = tmp_path / "chat.db"
    first = SqliteStore(path)
    await first.open()
    await mixed_history(first)
    before = state(first._db)
    count, after = expected(first._db, 7, None)
    hide, calls = sqlite_deletes.hide, [0]

    def crashing_hide(*args: object) -> None:
        calls[0] += 1
        if calls[0] == 5:  # after some parts have committed
            raise RuntimeError("the process died here")
        hide(*args)  # type: ignore[arg-type]

    monkeypatch.setattr(sqlite_deletes, "hide", crashing_hide)
    with pytest.raises(RuntimeError):
        await first.prune_history(max_per_user=7, older_than_ms=None)
    await first.close()
    monkeypatch.setattr(sqlite_deletes, "hide", hide)

    again = SqliteStore(path)
    await again.open()
    try:
        cut_short = state(again._db)
        assert cut_short != before  # the parts before the crash stayed committed
        held_before, held_after = len(before[0]), len(cut_short[0])
        pruned = await again.prune_history(max_per_user=7, older_than_ms=None)
        assert pruned == count - (held_before - held_after)
        assert state(again._db) == after
    finally:
        await again.close()
