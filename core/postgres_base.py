"""What every part of the PostgreSQL store shares: the pool, the task wrappers, the SQL that
reads a message as its reader sees it, and the notice log (core.postgres_store has the
theory of operation; this module is its plumbing).

The notice log (issue 11: read marks, deleted ids and "end every session" on a cluster's
bus). A store told :meth:`PostgresBase.keep_notices` (the cluster's bus tells it) records
each notice for a user in the transaction that makes it true, under the user's row lock,
with the user's next ``accounts.last_seq`` (the sequence deliveries take): so one user's
deliveries and notices share one order, and a bus that lost a notice finds the gap in the
sequence and reads the notice back (``notices_by_seq``). The service builds the notice it
pushes from what the store returned; the bus asks the store which seq that notice took
(``take_notice_seq``) and publishes it with that seq. Without ``keep_notices`` (one node)
nothing of this runs.
"""

from __future__ import annotations

import asyncio
import functools
import time
from collections import deque
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)

from core import postgres_migrations
from core.store import LoggedNotice, Store
from core.types import Delivery, MessagesDeleted, ReadMarker

_S = TypeVar("_S")
_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Larger than any id: "no upper bound" for id < $n queries.
NO_BOUND = 2**63 - 1
#: Pooled connections per node. Each is a PostgreSQL backend (a process, ~10 MiB); sends
#: hold one for ~4 round trips, so a handful keep a 2-vCPU node busy. Default max_connections
#: is 100: room for ~10 nodes.
POOL_SIZE = 8
#: Cached conversations (or remembered sends) before the cache is emptied (a few ids each).
CACHE_LIMIT = 100_000
#: Notice seqs taken by the store and not yet asked for by the bus, before they are dropped.
#: One stays only when the request that made it was cancelled after its commit (the bus's
#: gap repair then reads it from the log), so this bound is never reached in practice.
_UNCLAIMED_LIMIT = 10_000

# A message row as a recipient or owner ($1) sees it: the sender's name and whether that
# account is gone, the other participants' names.
DELIVERY = """
SELECT m.id, s.username, m.body, m.sent_at_ms, m.conversation_id,
       s.deleted_at_ms IS NOT NULL AS sender_deleted,
       ARRAY(SELECT a.username FROM unnest(c.members) AS x(id)
             JOIN accounts a ON a.id = x.id WHERE x.id <> $1) AS others
FROM messages m
JOIN accounts s ON s.id = m.sender_id
JOIN conversations c ON c.id = m.conversation_id
"""

# Delete the message rows among $1 that no history copy refers to any more.
COLLECT = """
DELETE FROM messages m WHERE m.id = ANY($1::bigint[]) AND NOT EXISTS (
    SELECT 1 FROM conversations c JOIN history h
      ON h.owner_id = ANY(c.members) AND h.conversation_id = c.id
    WHERE c.id = m.conversation_id AND h.message_id = m.id)
"""

# Take the next seq of each owner ($1, ascending: the caller holds or takes the row locks in
# id order) and record one notice each (arrays $2-$6 in the owners' order; $7 the node
# that writes them, $8 the time).
_LOG_NOTICES = """
WITH s AS (
    UPDATE accounts a SET last_seq = a.last_seq + 1 WHERE a.id = ANY($1::bigint[])
    RETURNING a.id, a.last_seq),
n AS (
    INSERT INTO notices(owner_id, seq, kind, conversation_id, up_to_id, unread, message_ids,
                        origin, at_ms)
    SELECT s.id, s.last_seq, d.kind, d.conversation_id, d.up_to_id, d.unread,
           string_to_array(d.ids, ',')::bigint[], $7, $8
    FROM s JOIN unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::bigint[],
                       $6::text[])
         AS d(owner, kind, conversation_id, up_to_id, unread, ids) ON d.owner = s.id
    RETURNING owner_id, seq)
SELECT owner_id, seq FROM n
"""


def in_task(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run the method in a task when it is called outside one. asyncpg needs a current task
    (its pool may connect or reset a connection under ``asyncio.timeout``), and the custom
    transport runs a request on the caller's stack until it first waits
    (transports/_eager.py). A PostgreSQL call always waits, so the task that costs
    is one the eager runner would have made anyway."""

    @functools.wraps(method)
    async def run(self: _S, *args: _P.args, **kw: _P.kwargs) -> _T:
        if asyncio.current_task() is None:
            return await asyncio.get_running_loop().create_task(method(self, *args, **kw))
        return await method(self, *args, **kw)

    return run


def write(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run a write in a task of its own that the caller's cancellation does not reach: a
    connection that closes while its ack or send is in flight (the transports cancel its
    request) must not roll back a write the client already handed over, as the SQLite
    store's writer queue does not. ``close`` waits for these tasks."""

    @functools.wraps(method)
    async def run(self: _S, *args: _P.args, **kw: _P.kwargs) -> _T:
        task = asyncio.get_running_loop().create_task(method(self, *args, **kw))
        writes: set[asyncio.Task[Any]] = self._writes  # type: ignore[attr-defined]
        writes.add(task)
        task.add_done_callback(writes.discard)
        return await asyncio.shield(task)

    return run


class PostgresBase(Store):
    """The state and plumbing the parts of :class:`core.postgres_store.PostgresStore`
    share (abstract: the Store methods are the parts')."""

    def __init__(self, dsn: str, *, pool_size: int = POOL_SIZE) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._senders: dict[int, asyncio.Lock] = {}  # sender id -> its sends, in call order
        self._conversations: dict[tuple[int, ...], int] = {}  # members -> id (immutable)
        self._writes: set[asyncio.Task[Any]] = set()  # writes in flight (see write)
        self._acks: dict[int, set[asyncio.Task[None]]] = {}  # recipient -> acks in flight
        # (sender, recipient names) -> (members, conversation, who was found) at the last
        # send: a guess that the one-statement send checks under the row locks.
        self._sends: dict[tuple[int, tuple[str, ...]], tuple[tuple[int, ...], int, dict[str, int]]]
        self._sends = {}
        #: The node whose notices this store logs (None: it logs none; see the top).
        self.notice_origin: str | None = None
        # (owner, notice) -> the seqs it took, oldest first, until the bus asks (see the top).
        self._unclaimed: dict[tuple[int, LoggedNotice], deque[int]] = {}

    async def open(self) -> PostgresBase:
        """Connect and upgrade the schema (idempotent)."""
        if asyncio.current_task() is None:
            return await asyncio.get_running_loop().create_task(self.open())
        await self._db()
        return self

    async def _db(self) -> asyncpg.Pool:
        if self._pool is not None:
            return self._pool
        async with self._opening:
            if self._pool is None:
                pool = await asyncpg.create_pool(
                    self.dsn,
                    min_size=1,
                    max_size=self.pool_size,
                    command_timeout=60,
                    reset=_keep_session,
                )
                try:
                    async with pool.acquire() as conn:
                        await postgres_migrations.upgrade(conn)
                except BaseException:
                    await pool.close()
                    raise
                self._pool = pool
        return self._pool

    async def _acked(self, recipient_id: int | None = None) -> None:
        """Wait for the acks of this recipient (None: of anyone) that this node has already
        taken in: what reads or rewrites pending copies must see them applied."""
        if recipient_id is None:
            acks = {task for tasks in self._acks.values() for task in tasks}
        else:
            acks = set(self._acks.get(recipient_id, ()))
        if acks:
            await asyncio.wait(acks)

    def _remember(self, members: tuple[int, ...], conversation_id: int) -> None:
        if len(self._conversations) >= CACHE_LIMIT:
            self._conversations.clear()
        self._conversations[members] = conversation_id

    @staticmethod
    async def _unread(
        pool: asyncpg.Pool | asyncpg.Connection, owner_id: int, conversation_id: int, mark: int
    ) -> int:
        count = await pool.fetchval(
            "SELECT count(*) FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = $1 AND h.conversation_id = $2 AND h.message_id > $3"
            " AND m.sender_id <> $1",
            owner_id,
            conversation_id,
            mark,
        )
        return int(count)

    # -- the notice log (see the top) --------------------------------------------------------
    def keep_notices(self, origin: str) -> None:
        """From now on log every notice in its user's sequence, as written by node
        ``origin`` (the cluster's bus calls this once, before the node serves anyone)."""
        self.notice_origin = origin

    def take_notice_seq(self, owner_id: int, notice: LoggedNotice) -> int:
        """The seq ``notice`` took for ``owner_id`` when it was committed (the oldest such,
        if the same notice was logged twice), 0 if none was logged."""
        seqs = self._unclaimed.get((owner_id, notice))
        if not seqs:
            return 0
        seq = seqs.popleft()
        if not seqs:
            del self._unclaimed[(owner_id, notice)]
        return seq

    async def _lock_accounts(self, conn: asyncpg.Connection, ids: Iterable[int]) -> None:
        """Take these accounts' row locks in id order (the order every send takes them in,
        so this never deadlocks with a send)."""
        await conn.execute(
            "SELECT 1 FROM accounts WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
            sorted(set(ids)),
        )

    async def _log_notices(
        self, conn: asyncpg.Connection, notices: Sequence[tuple[int, LoggedNotice]], now_ms: int
    ) -> list[tuple[int, LoggedNotice, int]]:
        """Inside a transaction that holds the owners' row locks (:meth:`_lock_accounts`):
        log one notice per owner, each with the owner's next seq. Returns (owner, notice,
        seq) for :meth:`_claimable` once the transaction has committed. Nothing when the
        store keeps no notices."""
        if self.notice_origin is None or not notices:
            return []
        ordered = sorted(notices, key=lambda pair: pair[0])
        if len({owner for owner, _ in ordered}) != len(ordered):
            raise ValueError("one notice per owner and transaction")
        columns: list[tuple[str, int | None, int | None, int | None, str | None]] = []
        for _, notice in ordered:
            if isinstance(notice, ReadMarker):
                columns.append(
                    ("read", notice.conversation_id, notice.up_to_id, notice.unread, None)
                )
            elif isinstance(notice, MessagesDeleted):
                ids = ",".join(str(i) for i in notice.message_ids)
                columns.append(("gone", None, None, None, ids))
            else:
                columns.append((notice.name, None, None, None, None))
        rows = await conn.fetch(
            _LOG_NOTICES,
            [owner for owner, _ in ordered],
            *(list(column) for column in zip(*columns, strict=True)),
            self.notice_origin,
            now_ms,
        )
        seqs = {int(owner): int(seq) for owner, seq in rows}
        return [(owner, notice, seqs[owner]) for owner, notice in ordered if owner in seqs]

    def _claimable(self, logged: Iterable[tuple[int, LoggedNotice, int]]) -> None:
        """After the commit: the bus may now ask for these seqs (``take_notice_seq``)."""
        if len(self._unclaimed) >= _UNCLAIMED_LIMIT:
            self._unclaimed.clear()  # (only requests cancelled after their commit get here)
        for owner, notice, seq in logged:
            self._unclaimed.setdefault((owner, notice), deque()).append(seq)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(set(self._writes))
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing. asyncpg's default (RESET ALL, UNLISTEN, unlock
    advisory locks, CLOSE ALL) is a round trip per use, for session state we never set."""


def clock_ms() -> int:
    """Wall-clock milliseconds (a notice's time in the log: only retention reads it)."""
    return int(time.time() * 1000)


def seqs_of(pairs: Sequence[Sequence[int]]) -> dict[int, int]:
    """[[recipient id, seq], ...] as a dict."""
    return {int(pair[0]): int(pair[1]) for pair in pairs}


def deliveries(rows: Iterable[Sequence[Any]]) -> list[Delivery]:
    """Rows of :data:`DELIVERY` as Deliveries (the body is UTF-8 bytes, surrogates kept)."""
    return [
        Delivery(
            row[0],
            row[1],
            row[2].decode("utf-8", "surrogatepass"),
            row[3],
            tuple(sorted(row[6])),
            row[5],
            row[4],
        )
        for row in rows
    ]


__all__ = [
    "CACHE_LIMIT",
    "COLLECT",
    "DELIVERY",
    "NO_BOUND",
    "POOL_SIZE",
    "LoggedNotice",
    "PostgresBase",
    "clock_ms",
    "deliveries",
    "in_task",
    "seqs_of",
    "write",
]
