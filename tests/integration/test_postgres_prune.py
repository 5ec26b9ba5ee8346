"""Retention on PostgreSQL commits in parts (core.postgres_history, ``prune_history``).

It was one statement in one transaction over all of history: every copy it removed stayed
row-locked until the end (a user deleting one of them waited for the whole prune), and every
removed id came back to Python for one COLLECT. Now each part is a transaction of its own of
at most PRUNE_PART copies. What goes must not change: the tests hold the result to the old
statement (``OLD_PRUNE``, kept here as the reference), run on the same history and rolled
back. A prune that waits on a row lock part-way shows its earlier parts committed; one killed
there is finished by the next prune; sends between parts stay."""

from __future__ import annotations

import asyncio
import os
import random
import signal
import sys
import time
from pathlib import Path

import asyncpg
import pytest

from core import postgres_history
from core.postgres_base import COLLECT, NO_BOUND
from core.postgres_store import PostgresStore
from tests.integration import test_postgres_store
from wirechat.services import PostgresService

DEADLINE_S = 30.0
ROOT = Path(__file__).resolve().parents[2]
NAMES = ("al", "bob", "cy", "dee", "ed", "flo", "gus")

# The prune before parts (core/postgres_history.py until this change), the reference.
OLD_PRUNE = """
WITH ranked AS (
    SELECT h.owner_id, h.conversation_id, h.message_id, m.sent_at_ms,
           row_number() OVER (PARTITION BY h.owner_id
                              ORDER BY h.message_id DESC) AS newest
    FROM history h JOIN messages m ON m.id = h.message_id)
DELETE FROM history h USING ranked r
WHERE h.owner_id = r.owner_id AND h.conversation_id = r.conversation_id
  AND h.message_id = r.message_id
  AND (r.sent_at_ms < $1 OR r.newest > $2)
  AND NOT EXISTS (SELECT 1 FROM pending p
                  WHERE p.recipient_id = h.owner_id
                    AND p.message_id = h.message_id)
RETURNING h.message_id
"""

#: A store on the session's database, emptied (test_postgres_store's).
store = test_postgres_store.store

State = tuple[frozenset[tuple[int, int, int]], frozenset[int], frozenset[tuple[int, int]]]


async def state(conn: asyncpg.Connection) -> State:
    """(history copies, message ids, pending copies) as they are committed (or as this
    connection's transaction sees them)."""
    history = await conn.fetch("SELECT owner_id, conversation_id, message_id FROM history")
    messages = await conn.fetch("SELECT id FROM messages")
    pending = await conn.fetch("SELECT recipient_id, message_id FROM pending")
    return (
        frozenset((r[0], r[1], r[2]) for r in history),
        frozenset(r[0] for r in messages),
        frozenset((r[0], r[1]) for r in pending),
    )


async def old_prune(url: str, keep: int | None, older_than_ms: int | None) -> tuple[int, State]:
    """What the old statement removes from the history as it is: (count, state after), in a
    transaction rolled back."""
    conn = await asyncpg.connect(url)
    try:
        tx = conn.transaction()
        await tx.start()
        try:
            gone = await conn.fetch(
                OLD_PRUNE,
                older_than_ms if older_than_ms is not None else -(2**63),
                keep if keep is not None else NO_BOUND,
            )
            await conn.execute(COLLECT, sorted({row[0] for row in gone}))
            return len(gone), await state(conn)
        finally:
            await tx.rollback()
    finally:
        await conn.close()


async def committed(url: str) -> State:
    conn = await asyncpg.connect(url)
    try:
        return await state(conn)
    finally:
        await conn.close()


async def random_history(store: PostgresStore, seed: int, sends: int = 200) -> None:
    """Accounts sending to one to three others (a name that does not exist too), times not in
    id order, acks, deletes for oneself and for everyone, an account deleted half-way."""
    rng = random.Random(seed)
    ids = {name: await store.create_account(name, "h", 0) for name in NAMES}
    live = list(NAMES)
    sent: dict[str, list[int]] = {name: [] for name in NAMES}
    for n in range(sends):
        sender = rng.choice(live)
        others = rng.sample([*NAMES, "ghost"], rng.randint(1, 3))
        stored = await store.add_message(
            ids[sender], f"m{n}", n * 10 + rng.randint(-40, 40), others
        )
        sent[sender].append(stored.message_id)
        roll = rng.random()
        if roll < 0.15:
            who = rng.choice(live)
            waiting = [d.message_id for d in await store.pending_after(ids[who], 0, 1000)]
            await store.mark_delivered(ids[who], rng.sample(waiting, len(waiting) // 2))
        elif roll < 0.2:
            await store.delete_messages(ids[sender], [rng.randint(1, n + 1)], False)
        elif roll < 0.23:
            await store.delete_messages(ids[sender], rng.sample(sent[sender], 1), True)
        if n == sends // 2:
            gone = rng.choice(live)
            live.remove(gone)
            await store.delete_account(ids[gone], purge_sent=rng.random() < 0.5, now_ms=n * 10)
    await store._acked()


RULES = [(3, None), (None, 1000), (5, 700), (0, None), (40, 1500), (1000, None), (None, -1)]


@pytest.mark.parametrize("seed", [1, 2, 3])
@pytest.mark.parametrize("tiny", [False, True])
async def test_pruning_in_parts_removes_what_the_one_statement_did(
    store: PostgresStore,
    postgres: PostgresService,
    monkeypatch: pytest.MonkeyPatch,
    seed: int,
    tiny: bool,
) -> None:
    if tiny:  # many parts: owners and messages split across them, a few owners per read
        monkeypatch.setattr(postgres_history, "PRUNE_PART", 3, raising=False)
        monkeypatch.setattr(postgres_history, "AGE_SPAN", 7, raising=False)
        monkeypatch.setattr(postgres_history, "OWNER_READ", 20, raising=False)
        monkeypatch.setattr(postgres_history, "OWNERS_PER_PART", 2, raising=False)
    await random_history(store, seed)
    for keep, older in RULES:
        count, after = await old_prune(postgres.url, keep, older)
        assert await store.prune_history(keep, older) == count, (keep, older)
        assert await committed(postgres.url) == after, (keep, older)
        assert await store.prune_history(keep, older) == 0  # nothing left to remove


async def test_a_prune_commits_its_parts_and_sends_between_them_stay(
    store: PostgresStore, postgres: PostgresService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(postgres_history, "PRUNE_PART", 8, raising=False)
    await random_history(store, 4)
    before = await committed(postgres.url)
    count, expected = await old_prune(postgres.url, 3, None)
    blocker, last = await lock_the_last_doomed_copy(postgres.url, before, expected)
    try:
        pruning = asyncio.create_task(store.prune_history(3, None))
        await waits_for_a_lock(postgres.url, pruning)
        part_way = await committed(postgres.url)
        # earlier parts are committed while the prune waits for the last copy's row
        assert expected[0] < part_way[0] < before[0]
        assert last in part_way[0]
        # sends between parts, to owners already pruned and to the one still waiting
        ids = await store.account_ids(NAMES)
        a, b, c = sorted(ids)[:3]
        stored = [
            await store.add_message(ids[a], "new", 10**6, [b]),
            await store.add_message(ids[b], "new", 10**6, [a, c]),
            await store.add_message(last[0], "new", 10**6, [a if ids[a] != last[0] else b]),
        ]
        sent = [s.message_id for s in stored]
        assert all(sent)
        with_sends = await committed(postgres.url)
    finally:
        await blocker.close()  # (its transaction rolls back: the row lock goes)
    assert await asyncio.wait_for(pruning, DEADLINE_S) == count
    # exactly what the old statement removed; the sends untouched
    assert without(await committed(postgres.url), sent) == expected
    assert only(await committed(postgres.url), sent) == only(with_sends, sent)
    assert len(only(with_sends, sent)[0]) == sum(len(s.recipients) + 1 for s in stored)


async def test_a_prune_killed_between_parts_is_finished_by_the_next(
    store: PostgresStore, postgres: PostgresService
) -> None:
    await random_history(store, 5)
    before = await committed(postgres.url)
    count, expected = await old_prune(postgres.url, 2, None)
    blocker, _ = await lock_the_last_doomed_copy(postgres.url, before, expected)
    victim = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        VICTIM,
        postgres.url,
        "2",
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    try:
        await waits_for_a_lock(postgres.url, None)
        part_way = await committed(postgres.url)
        assert expected[0] < part_way[0] < before[0]  # some parts committed
        victim.send_signal(signal.SIGKILL)  # the process dies between parts
        await asyncio.wait_for(victim.wait(), DEADLINE_S)
    finally:
        if victim.returncode is None:
            victim.kill()
            await asyncio.wait_for(victim.wait(), DEADLINE_S)
        await blocker.close()
    # the next prune removes the rest, and the two together what the old statement did
    again = await store.prune_history(2, None)
    assert again == count - (len(before[0]) - len(part_way[0]))
    assert await committed(postgres.url) == expected


async def test_no_transaction_of_a_prune_removes_more_than_a_part(
    store: PostgresStore, postgres: PostgresService
) -> None:
    conn = await asyncpg.connect(postgres.url)
    try:
        await bulk_history(conn, owners=6, messages=9_000)
        before = await state(conn)
        count, expected = await old_prune(postgres.url, 10, 3_000)
        await conn.execute(NOTE_DELETES)
        try:
            assert await store.prune_history(10, 3_000) == count
            assert await state(conn) == expected
            parts = await conn.fetch("SELECT tx, count(*) FROM pruned_in GROUP BY tx")
        finally:
            await conn.execute(FORGET_DELETES)
    finally:
        await conn.close()
    assert sum(n for _, n in parts) == count == len(before[0]) - len(expected[0]) > 12_000
    assert max(n for _, n in parts) <= 4_096  # (PRUNE_PART)


# Each copy deleted from history noted with its transaction (a trigger for the test above).
NOTE_DELETES = """
CREATE TABLE pruned_in(tx bigint NOT NULL);
CREATE FUNCTION note_pruned() RETURNS trigger LANGUAGE plpgsql AS
    $$ BEGIN INSERT INTO pruned_in VALUES (txid_current()); RETURN NULL; END $$;
CREATE TRIGGER note_pruned AFTER DELETE ON history FOR EACH ROW EXECUTE FUNCTION note_pruned();
"""
FORGET_DELETES = """
DROP TRIGGER note_pruned ON history; DROP FUNCTION note_pruned(); DROP TABLE pruned_in;
"""


async def bulk_history(conn: asyncpg.Connection, owners: int, messages: int) -> None:
    """A large history written straight into the tables (an empty database): ``owners``
    accounts in pairs, each pair a conversation, ``messages`` messages spread over the pairs,
    the first member sending, sent at its id in ms; every 10th still pending for the other."""
    await conn.execute(
        "INSERT INTO accounts(username, password_hash, created_at_ms)"
        " SELECT 'u' || g, 'h', 0 FROM generate_series(1, $1) g ORDER BY g",
        owners,
    )
    await conn.execute(
        "INSERT INTO conversations(members) SELECT ARRAY[2 * g - 1, 2 * g]::bigint[]"
        " FROM generate_series(1, $1) g ORDER BY g",
        owners // 2,
    )
    await conn.execute(
        "INSERT INTO messages(sender_id, conversation_id, body, sent_at_ms)"
        " SELECT c.members[1], c.id, 'x'::bytea, g FROM generate_series(1, $1) g"
        " JOIN conversations c ON c.id = g % $2 + 1 ORDER BY g",
        messages,
        owners // 2,
    )
    await conn.execute(
        "INSERT INTO history(owner_id, conversation_id, message_id)"
        " SELECT unnest(c.members), c.id, m.id FROM messages m"
        " JOIN conversations c ON c.id = m.conversation_id"
    )
    await conn.execute(
        "INSERT INTO pending(recipient_id, message_id, seq) SELECT c.members[2], m.id, m.id"
        " FROM messages m JOIN conversations c ON c.id = m.conversation_id WHERE m.id % 10 = 0"
    )
    await conn.execute("ANALYZE")


# A process that prunes in parts of 8 copies (argv: the URL, max_per_user).
VICTIM = """
import asyncio, sys
from core import postgres_history
from core.postgres_store import PostgresStore

postgres_history.PRUNE_PART = 8

async def main():
    store = await PostgresStore(sys.argv[1], pool_size=2).open()
    await store.prune_history(int(sys.argv[2]), None)
    await store.close()

asyncio.run(main())
"""


async def lock_the_last_doomed_copy(
    url: str, before: State, expected: State
) -> tuple[asyncpg.Connection, tuple[int, int, int]]:
    """A connection holding the row lock of the copy the prune removes last (the highest
    owner's oldest, past many others), as a user's delete in progress would."""
    doomed = sorted(before[0] - expected[0], key=lambda c: (c[0], -c[2]))
    assert len(doomed) > 20 and doomed[0][0] != doomed[-1][0]
    last = doomed[-1]
    conn = await asyncpg.connect(url)
    await conn.execute("BEGIN")
    await conn.execute(
        "SELECT 1 FROM history WHERE owner_id = $1 AND conversation_id = $2"
        " AND message_id = $3 FOR UPDATE",
        *last,
    )
    return conn, last


async def waits_for_a_lock(url: str, task: asyncio.Task[int] | None) -> None:
    """Until a backend waits for a lock (the prune's: nothing else runs)."""
    conn = await asyncpg.connect(url)
    try:
        deadline = time.monotonic() + DEADLINE_S
        while not await conn.fetchval(
            "SELECT count(*) FROM pg_stat_activity"
            " WHERE datname = current_database() AND wait_event_type = 'Lock'"
        ):
            assert time.monotonic() < deadline, "the prune never reached the locked copy"
            assert task is None or not task.done(), "the prune ended before the locked copy"
            await asyncio.sleep(0.01)
    finally:
        await conn.close()


def without(found: State, ids: list[int]) -> State:
    gone = set(ids)
    return (
        frozenset(c for c in found[0] if c[2] not in gone),
        frozenset(m for m in found[1] if m not in gone),
        frozenset(p for p in found[2] if p[1] not in gone),
    )


def only(found: State, ids: list[int]) -> State:
    kept = set(ids)
    return (
        frozenset(c for c in found[0] if c[2] in kept),
        frozenset(m for m in found[1] if m in kept),
        frozenset(p for p in found[2] if p[1] in kept),
    )
