"""WAL checkpoints of the SQLite file store off the loop (issue 10, core.sqlite_writer): every
CHECKPOINT_EVERY commits a thread copies the WAL into the database, first while the writes go
on, then with them held, so the WAL starts over instead of growing; writes that arrive during
the held pass wait for the next group and are all stored; a failed checkpoint fails no write."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path
from typing import Any

from core.sqlite_store import SqliteStore

#: Generous bound on any wait in these tests (a busy CI machine is slow, not this slow).
WAIT_S = 30.0


async def _store(tmp_path: Path, every: int) -> tuple[SqliteStore, int]:
    store = SqliteStore(tmp_path / "w.db")
    store._writer._checkpoint_every = every  # (small, so a test needs few commits)
    sender = await store.create_account("al", "h", 0)
    await store.create_account("bob", "h", 0)
    return store, sender


async def _groups(store: SqliteStore, sender: int, groups: int, size: int = 32) -> None:
    for g in range(groups):
        sends = (store.add_message(sender, f"m{g}.{i}", g, ["bob"]) for i in range(size))
        stored = await asyncio.gather(*sends)
        assert all(s.message_id for s in stored)


async def _settle(store: SqliteStore) -> None:
    """Wait until no checkpoint is under way (bounded by WAIT_S)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while store._writer._checkpointing and loop.time() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.01)  # (the writer has no event for it; a test-only wait)
    assert not store._writer._checkpointing, f"a checkpoint still runs after {WAIT_S} s"


def _wal_frames(path: Path) -> int:
    """Frames in the WAL since it last started over, as another connection sees it."""
    with sqlite3.connect(path) as other:
        other.execute("PRAGMA wal_autocheckpoint=0")
        return int(other.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[1])


async def _groups_until_checkpoints(store: SqliteStore, sender: int, target: int) -> int:
    """Write groups until ``store.checkpoints`` reaches ``target`` (bounded by 2,000 groups and
    WAIT_S: a checkpoint due while one runs is skipped, so a slow machine needs more commits
    per checkpoint). Returns the groups written."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    for written in range(1, 2001):
        await _groups(store, sender, 1)
        if store.checkpoints >= target or loop.time() > deadline:
            return written
    return 2000


async def test_the_wal_starts_over_after_each_checkpoint_instead_of_growing(tmp_path):
    store, al = await _store(tmp_path, every=8)
    commits = store.commits
    written = await _groups_until_checkpoints(store, al, 10)
    assert store.checkpoints >= 10, f"only {store.checkpoints} checkpoints in {written} groups"
    assert store.commits - commits >= written * 0.8, "the groups were not committed one by one"
    await _settle(store)
    # Stop right after the next checkpoint: what the WAL holds then is what came after it,
    # though every group before wrote frames (each group writes ~5-25 pages).
    written += await _groups_until_checkpoints(store, al, store.checkpoints + 1)
    frames = _wal_frames(tmp_path / "w.db")
    assert frames < 8 * 40, f"{frames} frames in the WAL after {store.checkpoints} checkpoints"
    assert await store.pending_count(2) == written * 32
    await store.close()


async def test_writes_during_a_checkpoint_wait_for_it_and_the_loop_serves_on(tmp_path):
    store, al = await _store(tmp_path, every=1)
    release = threading.Event()
    started = threading.Event()
    real = store._writer._checkpoint
    assert real is not None

    def slow_checkpoint() -> Any:
        if store._writer._held:  # the second pass (set on the loop before it was started)
            started.set()
            release.wait(WAIT_S)  # (the test releases it; the bound only keeps a failure short)
        return real()

    await _settle(store)  # (the checkpoints of the set-up's commits are over)
    store._writer._checkpoint = slow_checkpoint
    first = await store.add_message(al, "first", 0, ["bob"])  # commits, then a checkpoint
    assert first.message_id
    assert await asyncio.to_thread(started.wait, WAIT_S), "no held checkpoint pass started"
    waiting = [asyncio.ensure_future(store.add_message(al, f"m{i}", i, ["bob"])) for i in range(5)]
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert not any(t.done() for t in waiting), "a write was committed during the checkpoint"
    assert await store.pending_count(2) == 1  # reads are served meanwhile, from the loop
    release.set()
    stored = await asyncio.wait_for(asyncio.gather(*waiting), WAIT_S)
    ids = [s.message_id for s in stored]
    assert ids == sorted(ids) and ids[0] > first.message_id
    assert await store.pending_count(2) == 6
    await store.close()


async def test_a_failed_checkpoint_fails_no_write_and_the_next_one_runs(tmp_path, caplog):
    store, al = await _store(tmp_path, every=4)
    real = store._writer._checkpoint
    assert real is not None
    calls: list[int] = []

    def failing_once() -> Any:
        calls.append(1)
        if len(calls) == 1:
            raise sqlite3.OperationalError("disk I/O error (simulated)")
        return real()

    store._writer._checkpoint = failing_once
    # The failing pass runs on its thread: on a slow machine a burst of commits may end
    # before it does, so write bursts until the next pass was tried (bounded).
    bursts = 0
    while len(calls) < 2 and bursts < 10:
        await _groups(store, al, 12, size=4)
        bursts += 1
        await _settle(store)
    assert len(calls) >= 2, f"{len(calls)} checkpoint pass(es) tried in {bursts} x 12 commits"
    await _settle(store)  # (a checkpoint under way ends)
    assert store.checkpoints >= 1, f"no checkpoint succeeded after the failed one ({calls})"
    assert "WAL checkpoint failed" in caplog.text
    assert await store.pending_count(2) == 48 * bursts
    await store.close()


async def test_closing_waits_for_a_checkpoint_and_keeps_every_write(tmp_path):
    store, al = await _store(tmp_path, every=2)
    await _groups(store, al, 5, size=3)
    await store.close()  # (a checkpoint may be running: close waits for it)
    with sqlite3.connect(tmp_path / "w.db") as other:
        assert other.execute("SELECT count(*) FROM pending").fetchone()[0] == 15
