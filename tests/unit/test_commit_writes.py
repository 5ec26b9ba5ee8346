"""The SQLite store's send writes (core.sqlite_writer's ``Commit``, not an asyncio Future since
issue 10's stop 31): awaited by a task, a send that gives up before its group is staged is
not stored; a driver that wakes its sends itself is woken once per run of its sends, after
the commit that holds them all."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

from core.sqlite_store import SqliteStore
from core.sqlite_writer import ALONE_PER_TURN


def _pending(path: Path) -> list[str]:
    """The bodies pending, as another connection sees them (committed rows only)."""
    with sqlite3.connect(path) as other:
        rows = other.execute(
            "SELECT m.body FROM pending p JOIN messages m ON m.id = p.message_id ORDER BY m.id"
        )
        return [body for (body,) in rows]


async def test_a_send_whose_task_is_cancelled_before_its_group_is_not_stored(tmp_path):
    store = SqliteStore(tmp_path / "c.db")
    al = await store.create_account("al", "h", 0)
    await store.create_account("bob", "h", 0)
    tasks = [asyncio.create_task(store.add_message(al, f"m{i}", i, ["bob"])) for i in range(6)]
    await asyncio.sleep(0)  # every task has queued its write; the group is not staged yet
    tasks[3].cancel()
    outcomes = await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 20)
    assert isinstance(outcomes[3], asyncio.CancelledError)
    assert _pending(tmp_path / "c.db") == ["m0", "m1", "m2", "m4", "m5"]
    ids = [outcome.message_id for i, outcome in enumerate(outcomes) if i != 3]
    assert ids == sorted(ids) and len(set(ids)) == 5
    await store.close()


class _Driver:
    """Wakes its writes itself, as transports/custom/_server.py's staged connection does."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.writes: list[Any] = []  # in the order they were queued
        self.woken: list[tuple[int, list[str]]] = []  # (writes finished, pending then)
        self.done = asyncio.Event()

    def add(self, write: Any) -> None:
        assert write.queued
        write.wake_directly = self.committed  # (bound anew per write, as the server does)
        self.writes.append(write)

    def committed(self, write: Any) -> None:
        upto = self.writes.index(write) + 1
        assert all(not w.queued for w in self.writes[:upto])  # all of them committed
        self.woken.append((upto, _pending(self.path)))
        self.done.set()


async def test_a_driver_is_woken_once_for_its_run_of_sends_after_their_commit(tmp_path):
    store = SqliteStore(tmp_path / "d.db")
    al = await store.create_account("al", "h", 0)
    await store.create_account("bob", "h", 0)
    for i in range(ALONE_PER_TURN):  # (the writer was idle: groups of one, committed at once)
        assert not store.add_message_future(al, f"alone {i}", 0, ("bob",)).queued
    drivers = [_Driver(tmp_path / "d.db"), _Driver(tmp_path / "d.db")]
    for driver in drivers:  # two connections' pipelines, one after the other
        for i in range(5):
            driver.add(store.add_message_future(al, f"{id(driver)}-{i}", i, ("bob",)))
    await asyncio.wait_for(asyncio.gather(*(driver.done.wait() for driver in drivers)), 20)
    for driver in drivers:
        # one call, with its last write, once every one of them was committed
        assert [upto for upto, _ in driver.woken] == [5]
        (_, seen), bodies = driver.woken[0], [f"{id(driver)}-{i}" for i in range(5)]
        assert set(bodies) <= set(seen)
        ids = [write.result()[0] for write in driver.writes]
        assert ids == sorted(ids) and len(set(ids)) == 5
    await store.close()
