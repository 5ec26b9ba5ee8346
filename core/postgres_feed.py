"""The PostgreSQL store's side of the cluster's bus (core.nats_bus): where a user's sequence
stands, and what a node that missed part of it reads back. These methods make the store a
``core.store.SeqStore``.

A user's sequence (``accounts.last_seq``) numbers everything the bus carries for that user
in commit order: each delivery (``pending.seq``) and each notice (``notices.seq``, see
core.postgres_base). A seq that is neither pending nor in the notice log any more belongs to
a message acked since (read back by id from the user's history, ``received_between``), a
message deleted since, or a notice older than ``NOTICE_RETENTION``.
"""

from __future__ import annotations

from collections.abc import Sequence

from core.postgres_base import (
    DELIVERY,
    NO_BOUND,
    LoggedNotice,
    PostgresBase,
    deliveries,
    in_task,
    write,
)
from core.types import CloseReason, Delivery, MessagesDeleted, ReadMarker


class PostgresFeed(PostgresBase):
    """Sequences and catch-up reads for the cluster's bus (mixed into PostgresStore)."""

    @in_task
    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        """Account id -> (its last_seq, whether the account is deleted), for these ids."""
        rows = await (await self._db()).fetch(
            "SELECT id, last_seq, deleted_at_ms IS NOT NULL FROM accounts"
            " WHERE id = ANY($1::bigint[])",
            list(account_ids),
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    @in_task
    async def bus_baseline(self, account_id: int) -> tuple[int, int]:
        """(last_seq, the id of the newest message in the account's history that someone
        else sent it), read in one snapshot: every message to the account with seq <=
        last_seq has an id <= that one, every later one a greater id (core.postgres_store)."""
        row = await (await self._db()).fetchrow(
            # (history_by_owner_message, walked from the newest: stops at the first found)
            "SELECT a.last_seq, coalesce((SELECT h.message_id FROM history h"
            " JOIN messages m ON m.id = h.message_id WHERE h.owner_id = a.id"
            " AND m.sender_id <> a.id ORDER BY h.message_id DESC LIMIT 1), 0)"
            " FROM accounts a WHERE a.id = $1",
            account_id,
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    @in_task
    async def received_between(
        self, recipient_id: int, after_id: int, below_id: int, limit: int
    ) -> list[Delivery]:
        """Messages others sent the recipient, still in its history, with after_id < id <
        below_id (0: no bound), oldest first: what a gap missed, acked or not."""
        rows = await (await self._db()).fetch(
            DELIVERY + "JOIN history h ON h.message_id = m.id AND h.owner_id = $1"
            " AND h.conversation_id = m.conversation_id"
            " AND h.message_id > $2 AND h.message_id < $3"  # (history_by_owner_message's range)
            " WHERE m.sender_id <> $1 ORDER BY h.message_id LIMIT $4",
            recipient_id,
            after_id,
            below_id or NO_BOUND,
            limit,
        )
        return deliveries(rows)

    @in_task
    async def pending_by_seq(
        self, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Delivery]]:
        """The recipient's pending copies with after_seq < seq <= up_to_seq, as (seq,
        delivery), oldest first (a recipient's seqs and ids rise together)."""
        await self._acked(recipient_id)
        rows = await (await self._db()).fetch(
            DELIVERY.replace("SELECT m.id,", "SELECT p.seq, m.id,", 1)
            + "JOIN pending p ON p.message_id = m.id AND p.recipient_id = $1"
            " WHERE p.seq > $2 AND p.seq <= $3 ORDER BY p.seq LIMIT $4",
            recipient_id,
            after_seq,
            up_to_seq,
            limit,
        )
        return list(zip((row[0] for row in rows), deliveries(r[1:] for r in rows), strict=True))

    @in_task
    async def notices_by_seq(
        self, owner_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, LoggedNotice, str]]:
        """The owner's logged notices with after_seq < seq <= up_to_seq, as (seq, notice,
        the node that wrote it), oldest first."""
        rows = await (await self._db()).fetch(
            "SELECT seq, kind, conversation_id, up_to_id, unread, message_ids, origin"
            " FROM notices WHERE owner_id = $1 AND seq > $2 AND seq <= $3 ORDER BY seq LIMIT $4",
            owner_id,
            after_seq,
            up_to_seq,
            limit,
        )
        found: list[tuple[int, LoggedNotice, str]] = []
        for seq, kind, conversation_id, up_to_id, unread, ids, origin in rows:
            notice: LoggedNotice
            if kind == "read":
                notice = ReadMarker(conversation_id, up_to_id, unread)
            elif kind == "gone":
                notice = MessagesDeleted(tuple(ids))
            else:
                notice = CloseReason[kind]
            found.append((int(seq), notice, str(origin)))
        return found

    @write
    async def prune_notices(self, older_than_ms: int) -> int:
        """Forget the notices logged before ``older_than_ms``; returns how many went."""
        status = await (await self._db()).execute(
            "DELETE FROM notices WHERE at_ms < $1", older_than_ms
        )
        return int(status.split()[-1])


__all__ = ["PostgresFeed"]
