"""Group commit in the SQLite store (issue 10): sends that arrive together share one
transaction, each returns only once that transaction is committed, a failed commit fails
the whole group and leaves nothing of it, and ids keep the order of the calls."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from core.sqlite_store import CHUNK, SqliteStore
from core.sqlite_writer import WriteFailed
from core.store import DuplicateAccount
from core.store_glob import prefix_range
from transports._eager import start_eagerly


async def _store(tmp_path: Path) -> tuple[SqliteStore, int, int, list[str]]:
    store = SqliteStore(tmp_path / "g.db")
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    statements: list[str] = []
    store._db.set_trace_callback(statements.append)  # every statement the writer runs
    return store, al, bob, statements


def _outside(path: Path, sql: str) -> int:
    """A count seen by another connection: what is committed, nothing staged."""
    with sqlite3.connect(path) as other:
        return int(other.execute(sql).fetchone()[0])


async def test_concurrent_sends_share_one_transaction_and_keep_call_order(tmp_path):
    store, al, bob, statements = await _store(tmp_path)
    commits = store.commits
    sent = await asyncio.gather(*(store.add_message(al, f"m{i}", i, ["bob"]) for i in range(50)))
    # The first send found the writer idle and went alone; the other 49 were one group.
    assert statements.count("COMMIT") == store.commits - commits <= 2
    ids = [s.message_id for s in sent]
    assert ids == sorted(ids) and len(set(ids)) == 50  # increasing in call order
    assert _outside(tmp_path / "g.db", "SELECT count(*) FROM pending") == 50
    got = await store.pending_after(bob, 0, 100)
    assert [d.body for d in got] == [f"m{i}" for i in range(50)]  # per-pair order
    await store.close()


async def test_a_send_returns_only_after_its_group_is_committed(tmp_path):
    store, al, _, _ = await _store(tmp_path)
    committed_when_done: list[tuple[int, int]] = []

    async def send(i: int) -> None:
        await store.add_message(al, f"m{i}", i, ["bob"])
        committed_when_done.append((i, _outside(tmp_path / "g.db", "SELECT count(*) FROM pending")))

    await asyncio.gather(*(send(i) for i in range(20)))
    assert store.commits < 20 + 2  # (grouped; the exact count is the first test's)
    # When a send returned, another connection already saw its row and every earlier one.
    assert all(seen >= i + 1 for i, seen in committed_when_done)
    await store.close()


def _no_commit(action: int, arg1: object, *_: object) -> int:
    """A SQLite authorizer that denies COMMIT, as a full disk would make it fail."""
    deny = action == sqlite3.SQLITE_TRANSACTION and arg1 == "COMMIT"
    return sqlite3.SQLITE_DENY if deny else sqlite3.SQLITE_OK


async def test_a_failed_commit_fails_the_whole_group_and_leaves_nothing(tmp_path):
    store, al, bob, statements = await _store(tmp_path)

    store._db.set_authorizer(_no_commit)  # COMMIT now fails, as a full disk would make it
    results = await asyncio.gather(
        *(store.add_message(al, f"lost {i}", i, ["bob", "cy"]) for i in range(10)),
        return_exceptions=True,
    )
    assert all(isinstance(r, WriteFailed) for r in results)
    assert "nothing of it was saved" in str(results[-1])
    store._db.set_authorizer(None)
    assert _outside(tmp_path / "g.db", "SELECT count(*) FROM messages") == 0
    assert await store.pending_count(bob) == 0
    # The store goes on: the next sends are stored, in a conversation that really exists.
    again = await asyncio.gather(
        *(store.add_message(al, f"kept {i}", i, ["bob"]) for i in range(3))
    )
    assert [d.body for d in await store.pending_after(bob, 0, 10)] == ["kept 0", "kept 1", "kept 2"]
    assert (await store.members(again[0].conversation_id))[0].username in {"al", "bob"}
    assert "ROLLBACK" in statements
    await store.close()


async def test_a_domain_error_fails_only_its_own_write(tmp_path):
    store, al, bob, _ = await _store(tmp_path)
    await store.add_message(al, "first", 0, ["bob"])
    outcomes = await asyncio.gather(
        store.add_message(al, "one", 1, ["bob"]),
        store.create_account("bob", "other", 2),  # taken: fails alone
        store.add_message(al, "two", 3, ["bob"]),
        store.create_account("cy", "h", 4),
        return_exceptions=True,
    )
    assert isinstance(outcomes[1], DuplicateAccount)
    assert isinstance(outcomes[3], int)
    assert [d.body for d in await store.pending_after(bob, 0, 10)] == ["first", "one", "two"]
    await store.close()


async def test_a_large_delete_is_one_transaction_staged_over_several_loop_turns(tmp_path):
    store, al, bob, _ = await _store(tmp_path)
    count = 3 * CHUNK + 7
    for start in range(0, count, 100):
        await asyncio.gather(
            *(
                store.add_message(al, f"m{i}", i, ["bob"])
                for i in range(start, min(count, start + 100))
            )
        )
    commits = store.commits
    deleting = asyncio.ensure_future(store.delete_account(al, purge_sent=True, now_ms=9))
    turns = 0
    while not deleting.done():
        turns += 1
        # Readers see the state before the delete until its one commit.
        assert await store.pending_count(bob) in {count, 0}
        await asyncio.sleep(0)
    assert turns > 3  # the loop ran between chunks
    assert store.commits == commits + 1
    assert sorted(deleting.result()[bob]) == sorted(d for d in range(1, count + 1))
    assert await store.pending_count(bob) == 0
    assert _outside(tmp_path / "g.db", "SELECT count(*) FROM messages") == 0
    await store.close()


async def test_a_send_from_an_account_being_deleted_stores_nothing(tmp_path):
    store, al, bob, _ = await _store(tmp_path)
    await asyncio.gather(*(store.add_message(al, f"m{i}", i, ["bob"]) for i in range(CHUNK * 2)))
    deleting = asyncio.ensure_future(store.delete_account(al, purge_sent=True, now_ms=9))
    await asyncio.sleep(0)  # the deletion is staged, over several turns
    late = await store.add_message(al, "from another device", 10, ["bob"])  # (its session
    await deleting  # is ended only after the deletion returns)
    assert late.message_id == 0 and late.recipients == {}
    assert await store.pending_count(bob) == 0
    await store.close()


@pytest.mark.parametrize(
    ("glob", "expected"),
    [
        ("abc*", ("abc", "abd")),
        ("ab?d*", ("ab", "ac")),
        ("*x", ("", None)),
        ("[[]a]*", ("[a]", "[a^")),
        ("a[bc]*", ("a", "b")),
        ("exact", ("exact", "exacu")),
    ],
)
def test_a_patterns_literal_prefix_bounds_an_index_range(glob, expected):
    assert prefix_range(glob) == expected


async def test_with_synchronous_full_the_commit_runs_off_the_loop_and_still_groups(tmp_path):
    store = SqliteStore(tmp_path / "full.db", synchronous="FULL")  # an fsync per commit
    al = await store.create_account("al", "h", 0)
    bob = await store.create_account("bob", "h", 0)
    commits = store.commits
    sent = await asyncio.gather(*(store.add_message(al, f"m{i}", i, ["bob"]) for i in range(30)))
    assert store.commits - commits <= 2
    assert [s.message_id for s in sent] == sorted(s.message_id for s in sent)
    assert _outside(tmp_path / "full.db", "SELECT count(*) FROM pending") == 30
    assert len(await store.pending_after(bob, 0, 100)) == 30
    await store.close()


async def test_eager_sends_resume_in_queue_order_each_after_its_commit(tmp_path):
    # The custom server's way (transports/_eager.py): no task per send; the group's
    # commit resumes each send (Commit.wake_directly), and a send awaited by a task in the
    # same group keeps its place in the order.
    store, al, _, _ = await _store(tmp_path)
    done: list[tuple[int, int, int]] = []  # (call, message id, rows another reader saw)

    async def send(i: int) -> None:
        stored = await store.add_message(al, f"m{i}", i, ["bob"])
        seen = _outside(tmp_path / "g.db", "SELECT count(*) FROM pending")
        done.append((i, stored.message_id, seen))

    rests: list[asyncio.Future[None] | None] = [start_eagerly(send(i)) for i in range(10)]
    rests.append(asyncio.ensure_future(send(10)))  # (queued at its task's first step)
    rests += [start_eagerly(send(i)) for i in range(11, 20)]
    waiting = [rest for rest in rests if rest is not None]
    finished, _ = await asyncio.wait(waiting, timeout=20)
    assert len(finished) == len(waiting) and all(r.exception() is None for r in finished)
    assert sorted(i for i, _, _ in done) == list(range(20))
    ids = [message_id for _, message_id, _ in done]
    assert ids == sorted(ids) and len(set(ids)) == 20  # resumed in the order they were stored
    rows = sorted(seen for _, _, seen in done)
    assert all(seen >= n + 1 for n, seen in enumerate(rows))  # each after its commit
    await store.close()


async def test_an_eager_send_cancelled_while_its_group_waits_ends_cancelled(tmp_path):
    store, al, _, _ = await _store(tmp_path)
    finished: list[int] = []

    async def send(i: int) -> None:
        await store.add_message(al, f"m{i}", i, ["bob"])
        finished.append(i)

    started = {i: start_eagerly(send(i)) for i in range(8)}
    waiting = {i: rest for i, rest in started.items() if rest is not None}
    assert len(waiting) >= 4  # (a few may go alone, one by one, before the group forms)
    cancelled = sorted(waiting)[1]
    waiting[cancelled].cancel()  # (its connection closed: the group goes on without it)
    outcome = await asyncio.wait(waiting.values(), timeout=20)
    assert not outcome[1]
    assert waiting[cancelled].cancelled()
    assert finished == [i for i in range(8) if i != cancelled]
    await store.close()


async def test_eager_sends_of_a_failed_commit_each_fail(tmp_path):
    store, al, _, _ = await _store(tmp_path)

    store._db.set_authorizer(_no_commit)
    failed: list[int] = []

    async def send(i: int) -> None:
        try:
            await store.add_message(al, f"lost {i}", i, ["bob"])
        except WriteFailed:
            failed.append(i)

    rests = [rest for i in range(8) if (rest := start_eagerly(send(i))) is not None]
    assert rests and not (await asyncio.wait(rests, timeout=20))[1]
    assert failed == list(range(8))  # (woken with the group's failure, in order; none lost)
    assert _outside(tmp_path / "g.db", "SELECT count(*) FROM messages") == 0
    store._db.set_authorizer(None)
    await store.close()
