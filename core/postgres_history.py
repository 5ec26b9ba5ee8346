"""The PostgreSQL store's history (Rules 19-25): conversations, history pages, read marks,
deleting messages, retention (mixed into core.postgres_store.PostgresStore).

A read mark and the ids that leave a user's history are notices the user's other sessions
must see (Rules 22, 23): with a cluster's bus they are logged in the user's sequence in the
same transaction (core.postgres_base, "the notice log"), under the users' row locks taken
in id order before anything is deleted, as a send takes them.
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
        await self._acked()
        if max_per_user is None and older_than_ms is None:
            return 0
        # One statement, one snapshot: copies older than the cut, or beyond the newest
        # max_per_user of their owner (counting pending copies), unless still pending.
        # It reads all of history (a window over every owner): retention runs rarely.
        async with (await self._db()).acquire() as conn, conn.transaction():
            gone = await conn.fetch(
                """
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
                """,
                older_than_ms if older_than_ms is not None else -(2**63),
                max_per_user if max_per_user is not None else NO_BOUND,
            )
            await conn.execute(COLLECT, sorted({row[0] for row in gone}))
        return len(gone)


__all__ = ["PostgresHistory"]
