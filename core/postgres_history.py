"""The PostgreSQL store's history (Rules 19-25): conversations, history pages, read marks,
deleting messages, retention (mixed into core.postgres_store.PostgresStore).

A read mark and the ids that leave a user's history are notices the user's other sessions
must see (Rules 22, 23): with a cluster's bus they are logged in the user's sequence in the
same transaction (core.postgres_base, "the notice log"), under the users' row locks taken
in id order before anything is deleted, as a send takes them.

Retention (Rule 25, ``prune_history``) removes what one statement over all of history would:
a copy older than the cut, or past its owner's newest max_per_user (pending copies count),
unless it is still pending; a message whose last copy went is collected (COLLECT). It runs in
parts, each a transaction of its own that deletes at most PRUNE_PART copies and returns at
most that many ids: so no transaction holds the row locks of a whole prune, nor Python a list
of every id. By count first (what the age rule removes does not change an owner's ranking),
owners in id order, each one's copies from its cut (its newest copy past the limit) down;
then by age, message ids in ranges of AGE_SPAN. Why parts give what one statement would:

- One owner's copies commit in the order of their message ids (a send takes its members'
  row locks before it draws the id, core.postgres_store), so a send that commits after an
  owner's cut was read adds a newer copy than the cut: it is never removed, and the copies
  at or under the cut stay past the limit. A send during the prune is pruned, if at all,
  by the next one.
- Whether the age rule removes a copy depends on its message alone.
- A copy acked between parts may go (it was not pending when its part ran); a pending row is
  never added to a copy that exists.

A prune cut short (the process died between parts) leaves committed parts and no half part:
the next prune reads the cuts afresh and removes the rest.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)

from core.postgres_base import (
    COLLECT,
    DELIVERY,
    NO_BOUND,
    LoggedNotice,
    PostgresBase,
    clock_ms,
    deliveries,
    in_task,
    write,
)
from core.store import Member, NotSender, Removed
from core.store_conversations import conversation_list
from core.types import Conversation, Delivery, MessagesDeleted, ReadMarker

# A message's copies: history rows of its conversation's members (history has no index on
# message_id: it is found through the members, by the full key, as in the SQLite store).
HOLDERS = """
SELECT h.owner_id, h.message_id FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN history h ON h.owner_id = ANY(c.members) AND h.conversation_id = m.conversation_id
     AND h.message_id = m.id
WHERE m.id = ANY($1::bigint[])
"""


#: Copies one part of retention deletes in one transaction, and so the most ids it returns
#: to Python (a part holds the row locks of what it deletes until its COMMIT).
PRUNE_PART = 4_096
#: Message ids one part of retention by age looks through (a range of the primary key).
AGE_SPAN = 4_096
#: Index entries a read of owners' cuts may walk (each owner's newest max_per_user + 1):
#: the owners read at once are this over max_per_user + 1, at least one.
OWNER_READ = 65_536
#: Owners one read of cuts returns, and one part of retention by count deletes from.
OWNERS_PER_PART = 256

# The owners after $1 in id order (at most $3; a skip scan of the history index) with each
# one's cut: the newest copy past its newest $2 (NULL: it holds no more than $2).
_CUTS = """
WITH RECURSIVE o(id) AS (
    SELECT min(owner_id) FROM history WHERE owner_id > $1
    UNION ALL
    SELECT (SELECT min(h.owner_id) FROM history h WHERE h.owner_id > o.id)
    FROM o WHERE o.id IS NOT NULL)
SELECT o.id, (SELECT h.message_id FROM history h WHERE h.owner_id = o.id
              ORDER BY h.message_id DESC OFFSET $2 LIMIT 1)
FROM o WHERE o.id IS NOT NULL LIMIT $3
"""

# Delete the copies looked at (the CTE ``looked``) that are not still pending for their owner;
# returns (the message ids of the copies deleted, how many copies were looked at, where the
# part stopped: the statement's last column). Pending copies are skipped after the LIMIT, so a part
# reads at most its LIMIT of copies however many of them are pending.
_DROP_LOOKED = """,
gone AS (
    DELETE FROM history h USING looked l
    WHERE h.owner_id = l.owner_id AND h.conversation_id = l.conversation_id
      AND h.message_id = l.message_id
      AND NOT EXISTS (SELECT 1 FROM pending p
                      WHERE p.recipient_id = h.owner_id AND p.message_id = h.message_id)
    RETURNING h.message_id)
SELECT ARRAY(SELECT message_id FROM gone), (SELECT count(*) FROM looked),
"""

# Owner $1's copies from message $2 down, newest first, at most $3 (a backward walk of the
# index history(owner_id, message_id)).
_DROP_PAST_CUT = (
    """
WITH looked AS (
    SELECT owner_id, conversation_id, message_id FROM history
    WHERE owner_id = $1 AND message_id <= $2 ORDER BY message_id DESC LIMIT $3)"""
    + _DROP_LOOKED
    + "(SELECT min(message_id) FROM looked)"
)

# The copies of the messages sent before $4, in (message, owner) order past message $1's copy
# of owner $2, up to message $3, at most $5: each found by history's full key, one member of
# the message's conversation at a time (as a join, the planner read all of history for each
# part: a hash join with the messages of the range).
_DROP_OLD = (
    """
WITH looked AS (
    SELECT o.id AS owner_id, m.conversation_id, m.id AS message_id FROM messages m
    JOIN conversations c ON c.id = m.conversation_id
    CROSS JOIN LATERAL unnest(c.members) AS o(id)
    WHERE m.id >= $1 AND (m.id, o.id) > ($1, $2) AND m.id <= $3 AND m.sent_at_ms < $4
      AND (SELECT 1 FROM history h WHERE h.owner_id = o.id
           AND h.conversation_id = m.conversation_id AND h.message_id = m.id) IS NOT NULL
    ORDER BY m.id, o.id LIMIT $5)"""
    + _DROP_LOOKED
    + "(SELECT ARRAY[message_id, owner_id] FROM looked"
    + " ORDER BY message_id DESC, owner_id DESC LIMIT 1)"
)

# COLLECT for a part's ids: the same rows, each message looked up in history's primary key
# (COLLECT's NOT EXISTS became a hash anti-join over all of history for a few thousand ids:
# ~0.5 s a part at 1M copies, against ~15 ms this way).
_COLLECT_PART = """
DELETE FROM messages m USING conversations c
WHERE m.id = ANY($1::bigint[]) AND c.id = m.conversation_id
  AND (SELECT 1 FROM history h WHERE h.owner_id = ANY(c.members)
       AND h.conversation_id = c.id AND h.message_id = m.id LIMIT 1) IS NULL
"""


class PostgresHistory(PostgresBase):
    """Rules 19-25 on PostgreSQL."""

    @in_task
    async def conversation_of(self, member_ids: set[int]) -> int:
        members = tuple(sorted(member_ids))
        cached = self._conversations.get(members)
        if cached:
            return cached
        found = await (await self._db()).fetchval(
            "SELECT id FROM conversations WHERE members = $1::bigint[]", list(members)
        )
        if found is None:
            return 0
        self._remember(members, int(found))
        return int(found)

    @in_task
    async def members(self, conversation_id: int) -> list[Member]:
        rows = await (await self._db()).fetch(
            "SELECT a.id, a.username, a.deleted_at_ms IS NOT NULL FROM conversations c,"
            " unnest(c.members) AS x(id) JOIN accounts a ON a.id = x.id"
            " WHERE c.id = $1 ORDER BY a.id",
            conversation_id,
        )
        return [Member(row[0], row[1], row[2]) for row in rows]

    @in_task
    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        pool = await self._db()
        found = await pool.fetch(
            "SELECT conversation_id, max(message_id) AS last FROM history WHERE owner_id = $1"
            " GROUP BY conversation_id HAVING max(message_id) < $2 ORDER BY last DESC LIMIT $3",
            owner_id,
            before_id or NO_BOUND,
            limit,
        )
        return await conversation_list(
            self, owner_id, found, self._last_delivery, functools.partial(self._unread, pool)
        )

    @in_task
    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        rows = await (await self._db()).fetch(
            DELIVERY + "JOIN history h ON h.message_id = m.id AND h.owner_id = $1"
            " AND h.conversation_id = $2 WHERE m.id < $3 ORDER BY m.id DESC LIMIT $4",
            owner_id,
            conversation_id,
            before_id or NO_BOUND,
            limit,
        )
        return deliveries(rows)

    @in_task
    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        mark = await (await self._db()).fetchval(
            "SELECT up_to_id FROM read_state WHERE owner_id = $1 AND conversation_id = $2",
            owner_id,
            conversation_id,
        )
        return int(mark) if mark is not None else 0

    @write
    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        async with (await self._db()).acquire() as conn, conn.transaction():
            if self.notice_origin is not None:  # (the notice's seq: under the row lock)
                await self._lock_accounts(conn, [owner_id])
            await conn.execute(
                "INSERT INTO read_state(owner_id, conversation_id, up_to_id)"
                " SELECT $1, $2, least($3::bigint, max(message_id)) FROM history"
                " WHERE owner_id = $1 AND conversation_id = $2 HAVING max(message_id) > 0"
                " AND least($3::bigint, max(message_id)) > 0"
                " ON CONFLICT (owner_id, conversation_id)"
                " DO UPDATE SET up_to_id = greatest(read_state.up_to_id, excluded.up_to_id)",
                owner_id,
                conversation_id,
                up_to_id,
            )
            mark = await conn.fetchval(
                "SELECT up_to_id FROM read_state WHERE owner_id = $1 AND conversation_id = $2",
                owner_id,
                conversation_id,
            )
            mark = int(mark) if mark is not None else 0
            unread = await self._unread(conn, owner_id, conversation_id, mark)
            marker = ReadMarker(conversation_id, mark, unread)  # (what the service pushes)
            logged = await self._log_notices(conn, [(owner_id, marker)], clock_ms())
        self._claimable(logged)
        return mark, unread

    @write
    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        await self._acked()
        async with (await self._db()).acquire() as conn, conn.transaction():
            found = await conn.fetch(
                "SELECT m.id, m.sender_id, EXISTS (SELECT 1 FROM history h WHERE h.owner_id = $1"
                " AND h.conversation_id = m.conversation_id AND h.message_id = m.id)"
                " FROM messages m WHERE m.id = ANY($2::bigint[]) ORDER BY m.id",
                owner_id,
                ids,
            )
            if for_everyone:
                removed, logged = await self._delete_for_everyone(conn, owner_id, found)
            else:
                held = [mid for mid, _, holds in found if holds]
                removed, logged = await self._delete_for_me(conn, owner_id, held)
        self._claimable(logged)
        return removed

    async def _last_delivery(self, owner_id: int, message_id: int) -> Delivery | None:
        """A message as its owner sees it; None if it is gone."""
        rows = await (await self._db()).fetch(DELIVERY + "WHERE m.id = $2", owner_id, message_id)
        return deliveries(rows)[0] if rows else None

    async def _delete_for_me(
        self, conn: asyncpg.Connection, owner_id: int, held: list[int]
    ) -> tuple[Removed, list[tuple[int, LoggedNotice, int]]]:
        """delete_messages(for_everyone=False) inside its transaction: (what went from the
        owner's history, the notice logged for it)."""
        if not held:
            return {}, []
        if self.notice_origin is not None:  # (the notice's seq: under the row lock)
            await self._lock_accounts(conn, [owner_id])
        await conn.execute(
            "DELETE FROM pending WHERE recipient_id = $1 AND message_id = ANY($2::bigint[])",
            owner_id,
            held,
        )
        await conn.execute(
            "DELETE FROM history h USING messages m WHERE h.owner_id = $1"
            " AND m.id = ANY($2::bigint[]) AND h.conversation_id = m.conversation_id"
            " AND h.message_id = m.id",
            owner_id,
            held,
        )
        await conn.execute(COLLECT, held)
        notice = MessagesDeleted(tuple(held))
        return {owner_id: held}, await self._log_notices(conn, [(owner_id, notice)], clock_ms())

    async def _delete_for_everyone(
        self, conn: asyncpg.Connection, owner_id: int, found: Sequence[Sequence[Any]]
    ) -> tuple[Removed, list[tuple[int, LoggedNotice, int]]]:
        """delete_messages(for_everyone=True) inside its transaction: (what went from whose
        history, the notices logged for them)."""
        # Considered: what the caller holds or sent; anything else is not theirs to see.
        considered = [mid for mid, sender, holds in found if holds or sender == owner_id]
        foreign = [mid for mid, sender, holds in found if holds and sender != owner_id]
        if foreign:
            raise NotSender(foreign)  # (the transaction rolls back: nothing changed)
        copies = await conn.fetch(HOLDERS, considered)
        if copies and self.notice_origin is not None:  # (each holder's notice seq)
            await self._lock_accounts(conn, {owner for owner, _ in copies})
        gone: dict[int, list[int]] = {}
        for owner, mid in copies:
            gone.setdefault(owner, []).append(mid)
        await conn.execute(
            "DELETE FROM history h USING messages m, conversations c"
            " WHERE m.id = ANY($1::bigint[]) AND c.id = m.conversation_id"
            " AND h.owner_id = ANY(c.members) AND h.conversation_id = m.conversation_id"
            " AND h.message_id = m.id",
            considered,
        )
        await conn.execute(
            "DELETE FROM pending p USING messages m, conversations c"
            " WHERE m.id = ANY($1::bigint[]) AND c.id = m.conversation_id"
            " AND p.recipient_id = ANY(c.members) AND p.message_id = m.id",
            considered,
        )
        await conn.execute("DELETE FROM messages WHERE id = ANY($1::bigint[])", considered)
        removed: Removed = {owner: sorted(mids) for owner, mids in gone.items()}
        notices: list[tuple[int, LoggedNotice]] = [
            (owner, MessagesDeleted(tuple(ids))) for owner, ids in removed.items()
        ]
        return removed, await self._log_notices(conn, notices, clock_ms())

    @write
    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        """By count, then by age, each in parts of their own (the module's top: what one
        statement for both would remove, PRUNE_PART copies per transaction)."""
        await self._acked()
        pool = await self._db()
        pruned = 0
        if max_per_user is not None:
            pruned += await self._prune_past_limit(pool, max(max_per_user, 0))
        if older_than_ms is not None:
            pruned += await self._prune_old(pool, older_than_ms)
        return pruned

    async def _prune_past_limit(self, pool: asyncpg.Pool, keep: int) -> int:
        """Retention by count: owners in id order, a batch of them with their cuts read in
        one statement, then their copies from the cut down, a transaction per part."""
        batch = min(max(OWNER_READ // (keep + 1), 1), OWNERS_PER_PART)
        pruned = after = 0
        while True:
            owners = await pool.fetch(_CUTS, after, keep, batch)
            if not owners:
                return pruned
            after = int(owners[-1][0])
            work = [(int(owner), int(cut)) for owner, cut in owners if cut is not None]
            while work:
                done, work = await self._count_part(pool, work)
                pruned += done

    async def _count_part(
        self, pool: asyncpg.Pool, work: list[tuple[int, int]]
    ) -> tuple[int, list[tuple[int, int]]]:
        """One transaction of retention by count: for each (owner, upper) in turn, the
        owner's copies from message ``upper`` down, newest first, those still pending
        skipped, until PRUNE_PART copies looked at or OWNERS_PER_PART owners. Returns
        (copies pruned, the work left: an owner cut short first, with its new upper)."""
        gone: list[int] = []
        read = 0
        left: list[tuple[int, int]] = []
        async with pool.acquire() as conn, conn.transaction():
            for turn, (owner, upper) in enumerate(work):
                if read >= PRUNE_PART or turn >= OWNERS_PER_PART:
                    left = work[turn:]
                    break
                room = PRUNE_PART - read
                ids, looked, lowest = await conn.fetchrow(_DROP_PAST_CUT, owner, upper, room)
                gone += ids
                read += looked
                if looked == room:  # maybe more below: this owner again, from there down
                    left = [(owner, int(lowest) - 1), *work[turn + 1 :]]
                    break
            if gone:
                await conn.execute(_COLLECT_PART, sorted(set(gone)))
        return len(gone), left

    async def _prune_old(self, pool: asyncpg.Pool, older_than_ms: int) -> int:
        """Retention by age: message ids up to the newest when it began, AGE_SPAN ids (at
        most PRUNE_PART copies) per transaction."""
        last = int(await pool.fetchval("SELECT coalesce(max(id), 0) FROM messages"))
        pruned, after = 0, (0, NO_BOUND)
        while after[0] < last:
            done, after = await self._age_part(pool, older_than_ms, after, last)
            pruned += done
        return pruned

    async def _age_part(
        self, pool: asyncpg.Pool, older_than_ms: int, after: tuple[int, int], last: int
    ) -> tuple[int, tuple[int, int]]:
        """One transaction of retention by age: the copies of the messages sent before
        ``older_than_ms`` past ``after`` (message, owner) up to message ``after[0]`` +
        AGE_SPAN (not past ``last``), in (message, owner) order, those still pending skipped,
        at most PRUNE_PART looked at. Returns (copies pruned, the ``after`` of the next
        part: where a full part stopped, else the end of its range)."""
        upto = min(after[0] + AGE_SPAN, last)
        async with pool.acquire() as conn, conn.transaction():
            ids, looked, stop = await conn.fetchrow(
                _DROP_OLD, *after, upto, older_than_ms, PRUNE_PART
            )
            if ids:
                await conn.execute(_COLLECT_PART, sorted(set(ids)))
        if looked == PRUNE_PART:
            return len(ids), (int(stop[0]), int(stop[1]))
        return len(ids), (upto, NO_BOUND)


__all__ = ["PostgresHistory"]
