"""PostgresStore: the Store on PostgreSQL through asyncpg (schema: ``core.postgres_migrations``).

For one node or several sharing one database (DESIGN.md "Scale-out"). Every write method is
one transaction on a pooled connection and returns after its COMMIT (but an ack: see
``mark_delivered``), so it is durable then (Rules 9, 16: with
PostgreSQL's default ``synchronous_commit=on`` a commit is in the WAL, flushed, before the
server answers). Reads are single statements. Nothing runs on the event loop but the
driver: the queries run in the database server.

Send (Rules 8, 9, 13). ``add_message`` decides who exists inside its own transaction: one
``SELECT ... FOR UPDATE`` locks the sender's and every live recipient's account row, in id
order (the same order in every transaction, so two sends never deadlock), and only then
draws the message id and each recipient's next ``last_seq``. So for any one recipient,
messages commit in the order of their ids and seqs: a concurrent send to the same person
waits for the row lock until the first has committed. A deletion takes the same row lock
first, so a message is stored either before an account goes (and the deletion removes its
copies) or not at all. Sends from one sender on this node are also queued in call order by
a per-sender asyncio lock, so pipelined requests keep their order (Rule 13) whatever
connection the pool hands each one.

Caches. Nothing cached in the process can go stale across nodes, so no bus message is
needed to invalidate anything: conversation members -> id never changes (a conversation
keeps its members; its id comes from one sequence), and "the last send with these names
found these accounts" is only a guess that the next such send checks under the row locks
(``_SEND_KNOWN``: one statement, one round trip; on a mismatch it writes nothing and the
send takes the full path). Everything else about accounts is read from the database.
"""

from __future__ import annotations

import asyncio
import functools
import logging
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any, Concatenate, ParamSpec, TypeVar

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)

from core import limits, postgres_migrations
from core.sqlite_store import _prefix_range
from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.types import Conversation, Delivery

log = logging.getLogger(__name__)

_S = TypeVar("_S")
_P = ParamSpec("_P")
_T = TypeVar("_T")

#: Larger than any id: "no upper bound" for id < $n queries.
_NO_BOUND = 2**63 - 1
#: Pooled connections per node. Each is a PostgreSQL backend (a process, ~10 MiB); sends
#: hold one for ~4 round trips, so a handful keep a 2-vCPU node busy. Default max_connections
#: is 100: room for ~10 nodes.
POOL_SIZE = 8
#: Cached conversations before the cache is emptied (each entry is a few ids).
_CACHE_LIMIT = 100_000

# A message row as a recipient or owner ($1) sees it: the sender's name and whether that
# account is gone, the other participants' names.
_DELIVERY = """
SELECT m.id, s.username, m.body, m.sent_at_ms, m.conversation_id,
       s.deleted_at_ms IS NOT NULL AS sender_deleted,
       ARRAY(SELECT a.username FROM unnest(c.members) AS x(id)
             JOIN accounts a ON a.id = x.id WHERE x.id <> $1) AS others
FROM messages m
JOIN accounts s ON s.id = m.sender_id
JOIN conversations c ON c.id = m.conversation_id
"""

# A message's copies: history rows of its conversation's members (history has no index on
# message_id: it is found through the members, by the full key, as in the SQLite store).
_HOLDERS = """
SELECT h.owner_id, h.message_id FROM messages m
JOIN conversations c ON c.id = m.conversation_id
JOIN history h ON h.owner_id = ANY(c.members) AND h.conversation_id = m.conversation_id
     AND h.message_id = m.id
WHERE m.id = ANY($1::bigint[])
"""

# Delete the message rows among $1 that no history copy refers to any more.
_COLLECT = """
DELETE FROM messages m WHERE m.id = ANY($1::bigint[]) AND NOT EXISTS (
    SELECT 1 FROM conversations c JOIN history h
      ON h.owner_id = ANY(c.members) AND h.conversation_id = c.id
    WHERE c.id = m.conversation_id AND h.message_id = m.id)
"""


def _in_task(
    method: Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]],
) -> Callable[Concatenate[_S, _P], Coroutine[Any, Any, _T]]:
    """Run the method in a task when it is called outside one. asyncpg needs a current task
    (its pool may connect or reset a connection under ``asyncio.timeout``), and the custom
    transport runs a request on the caller's stack until it first waits
    (transports/custom/_eager.py). A PostgreSQL call always waits, so the task that costs
    is one the eager runner would have made anyway."""

    @functools.wraps(method)
    async def run(self: _S, *args: _P.args, **kw: _P.kwargs) -> _T:
        if asyncio.current_task() is None:
            return await asyncio.get_running_loop().create_task(method(self, *args, **kw))
        return await method(self, *args, **kw)

    return run


def _write(
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


# A send whose participants are the ones the last send with these names found ($3: member
# ids ascending, sender included). Locks the sender's and the recipients' rows in id order,
# checks that exactly those accounts are live, and only then draws the message id and the
# recipients' seqs. NULL when the check fails (an account came or went): nothing written.
_SEND_KNOWN = """
WITH live AS (
    SELECT id FROM accounts WHERE (username = ANY($1::text[]) OR id = $2)
    AND deleted_at_ms IS NULL ORDER BY id FOR UPDATE),
m AS (
    INSERT INTO messages(sender_id, conversation_id, body, sent_at_ms)
    SELECT $2, $4, $5, $6
    WHERE (SELECT array_agg(id ORDER BY id) FROM live) = $3::bigint[]
    RETURNING id),
s AS (
    UPDATE accounts a SET last_seq = a.last_seq + 1 FROM m WHERE a.id = ANY($7::bigint[])
    RETURNING a.id, a.last_seq),
p AS (
    INSERT INTO pending(recipient_id, message_id, seq) SELECT s.id, m.id, s.last_seq FROM s, m),
h AS (
    INSERT INTO history(owner_id, conversation_id, message_id)
    SELECT o, $4, m.id FROM unnest($3::bigint[]) AS o, m)
SELECT id, ARRAY(SELECT ARRAY[s.id, s.last_seq] FROM s) FROM m
"""


class PostgresStore(Store):
    """PostgreSQL at ``dsn`` (``postgresql://user[:password]@host:port/dbname``). The pool
    opens, and the schema is upgraded, on first use (or :meth:`open`)."""

    def __init__(self, dsn: str, *, pool_size: int = POOL_SIZE) -> None:
        self.dsn = dsn
        self.pool_size = pool_size
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()
        self._senders: dict[int, asyncio.Lock] = {}  # sender id -> its sends, in call order
        self._conversations: dict[tuple[int, ...], int] = {}  # members -> id (immutable)
        self._writes: set[asyncio.Task[Any]] = set()  # writes in flight (see _write)
        self._acks: dict[int, set[asyncio.Task[None]]] = {}  # recipient -> acks in flight
        # (sender, recipient names) -> (members, conversation, who was found) at the last
        # send: a guess that _SEND_KNOWN checks under the row locks, never trusted blindly.
        self._sends: dict[tuple[int, tuple[str, ...]], tuple[tuple[int, ...], int, dict[str, int]]]
        self._sends = {}

    @_in_task
    async def open(self) -> PostgresStore:
        """Connect and upgrade the schema (idempotent)."""
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

    # -- accounts ----------------------------------------------------------------------------
    @_write
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        pool = await self._db()
        try:
            account_id = await pool.fetchval(
                "INSERT INTO accounts(username, password_hash, created_at_ms)"
                " VALUES ($1, $2, $3) RETURNING id",
                username,
                password_hash,
                now_ms,
            )
        except asyncpg.UniqueViolationError as exc:  # accounts_live_name: one statement
            raise DuplicateAccount(username) from exc
        return int(account_id)

    @_in_task
    async def find_account(self, username: str) -> Account | None:
        row = await (await self._db()).fetchrow(
            "SELECT id, username, password_hash FROM accounts"
            " WHERE username = $1 AND deleted_at_ms IS NULL",
            username,
        )
        return Account(row[0], row[1], row[2]) if row else None

    @_in_task
    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        rows = await (await self._db()).fetch(
            "SELECT username, id FROM accounts"
            " WHERE username = ANY($1::text[]) AND deleted_at_ms IS NULL",
            list(usernames),
        )
        return {row[0]: row[1] for row in rows}

    @_in_task
    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        # The pattern's literal prefix bounds an index range (COLLATE "C": byte order);
        # what matches inside it is the regular expression's to say.
        if "\x00" in glob:  # no name holds a NUL (and a PostgreSQL string cannot)
            return []
        # Names above "ab\x00..." are the names above "ab" (none holds a NUL): same answer.
        after = after.split("\x00", 1)[0]
        prefix, above = _prefix_range(glob)
        args: list[object] = [glob_to_regex(glob), max(prefix, after), limit]
        op = ">=" if prefix > after else ">"
        bound = ""
        if above is not None:
            args.append(above)
            bound = " AND username < $4"
        rows = await (await self._db()).fetch(
            "SELECT username FROM accounts WHERE deleted_at_ms IS NULL AND username ~ $1"
            f" AND username {op} $2{bound} ORDER BY username LIMIT $3",
            *args,
        )
        return [row[0] for row in rows]

    @_write
    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        await self._acked()
        removed: Removed = {}
        async with (await self._db()).acquire() as conn, conn.transaction():
            # The row lock every send to or from this account takes first (see the top).
            await conn.execute("SELECT 1 FROM accounts WHERE id = $1 FOR UPDATE", account_id)
            own = await conn.fetch(
                "DELETE FROM history WHERE owner_id = $1 RETURNING message_id", account_id
            )
            await conn.execute("DELETE FROM pending WHERE recipient_id = $1", account_id)
            await conn.execute("DELETE FROM read_state WHERE owner_id = $1", account_id)
            doomed = {row[0] for row in own}
            if purge_sent:
                # Still pending = never acked by that recipient (Rule 15's "undelivered").
                copies = await conn.fetch(
                    "DELETE FROM pending p USING messages m WHERE m.id = p.message_id"
                    " AND m.sender_id = $1 AND p.recipient_id <> $1"
                    " RETURNING p.recipient_id, p.message_id, m.conversation_id",
                    account_id,
                )
                await conn.execute(
                    "DELETE FROM history h USING unnest($1::bigint[], $2::bigint[], $3::bigint[])"
                    " AS d(owner, conversation, message) WHERE h.owner_id = d.owner"
                    " AND h.conversation_id = d.conversation AND h.message_id = d.message",
                    [row[0] for row in copies],
                    [row[2] for row in copies],
                    [row[1] for row in copies],
                )
                for owner, message_id, _ in copies:
                    removed.setdefault(owner, []).append(message_id)
                    doomed.add(message_id)
            await conn.execute(_COLLECT, sorted(doomed))
            await conn.execute("DELETE FROM resume_tokens WHERE account_id = $1", account_id)
            await conn.execute(
                "UPDATE accounts SET password_hash = '', deleted_at_ms = $2 WHERE id = $1",
                account_id,
                now_ms,
            )
        return {owner: sorted(ids) for owner, ids in removed.items()}

    # -- account security (issue 13) ---------------------------------------------------------
    @_write
    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        await (await self._db()).execute(
            "UPDATE accounts SET password_hash = $2 WHERE id = $1 AND deleted_at_ms IS NULL",
            account_id,
            password_hash,
        )

    @_write
    async def add_resume_token(
        self, account_id: int, token_hash: bytes, expires_at_ms: int
    ) -> None:
        async with (await self._db()).acquire() as conn, conn.transaction():
            await conn.execute(
                "INSERT INTO resume_tokens(token_hash, account_id, expires_at_ms)"
                " VALUES ($1, $2, $3) ON CONFLICT (token_hash) DO UPDATE"
                " SET account_id = $2, expires_at_ms = $3",
                token_hash,
                account_id,
                expires_at_ms,
            )
            # Past the cap, the tokens that expire first make room (an indexed range).
            await conn.execute(
                "DELETE FROM resume_tokens WHERE token_hash IN (SELECT token_hash"
                " FROM resume_tokens WHERE account_id = $1 ORDER BY expires_at_ms DESC,"
                " token_hash DESC OFFSET $2)",
                account_id,
                limits.MAX_RESUME_TOKENS_PER_ACCOUNT,
            )

    @_in_task
    async def resume_account(self, token_hash: bytes, now_ms: int) -> tuple[int, str] | None:
        row = await (await self._db()).fetchrow(
            "SELECT t.account_id, t.expires_at_ms, a.username, a.deleted_at_ms"
            " FROM resume_tokens t JOIN accounts a ON a.id = t.account_id"
            " WHERE t.token_hash = $1",
            token_hash,
        )
        if row is None:
            return None
        if row[1] <= now_ms or row[3] is not None:
            await self.revoke_resume_token(token_hash)
            return None
        return int(row[0]), str(row[2])

    @_write
    async def revoke_resume_token(self, token_hash: bytes) -> None:
        await (await self._db()).execute(
            "DELETE FROM resume_tokens WHERE token_hash = $1", token_hash
        )

    @_write
    async def revoke_resume_tokens(self, account_id: int) -> None:
        await (await self._db()).execute(
            "DELETE FROM resume_tokens WHERE account_id = $1", account_id
        )

    # -- messages ----------------------------------------------------------------------------
    @_write
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        lock = self._senders.setdefault(sender_id, asyncio.Lock())
        try:
            async with lock:
                return await self._add_message(sender_id, body, now_ms, recipients)
        finally:
            if not lock.locked() and self._senders.get(sender_id) is lock:
                del self._senders[sender_id]  # (no one waits on it: waiters hold it in turn)

    async def _add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        pool = await self._db()
        encoded = body.encode("utf-8", "surrogatepass")  # what the service measured
        key = (sender_id, tuple(sorted(set(recipients))))
        known = self._sends.get(key)
        if known is not None:
            # One statement, one round trip, its own transaction: the row locks are held
            # only while PostgreSQL runs it, not across client round trips.
            members, conversation_id, found = known
            row = await pool.fetchrow(
                _SEND_KNOWN,
                list(key[1]),
                sender_id,
                list(members),
                conversation_id,
                encoded,
                now_ms,
                sorted(set(found.values())),
            )
            if row is not None:
                return StoredMessage(int(row[0]), conversation_id, dict(found), _seqs(row[1]))
            del self._sends[key]  # someone came or went: decide afresh, below
        async with pool.acquire() as conn, conn.transaction():
            rows = await conn.fetch(
                "SELECT id, username FROM accounts WHERE (username = ANY($1::text[]) OR id = $2)"
                " AND deleted_at_ms IS NULL ORDER BY id FOR UPDATE",
                list(recipients),
                sender_id,
            )
            wanted = set(recipients)
            found = {name: i for i, name in rows if name in wanted}
            if not found or not any(i == sender_id for i, _ in rows):
                return StoredMessage(0, 0, {})  # no recipient, or the sender is gone
            members = tuple(sorted({sender_id, *found.values()}))
            conversation_id = self._conversations.get(members) or await self._conversation(
                conn, members
            )
            targets = sorted(set(found.values()))
            row = await conn.fetchrow(
                """
                WITH m AS (
                    INSERT INTO messages(sender_id, conversation_id, body, sent_at_ms)
                    VALUES ($1, $2, $3, $4) RETURNING id),
                s AS (
                    UPDATE accounts SET last_seq = last_seq + 1 WHERE id = ANY($5::bigint[])
                    RETURNING id, last_seq),
                p AS (
                    INSERT INTO pending(recipient_id, message_id, seq)
                    SELECT s.id, m.id, s.last_seq FROM s, m),
                h AS (
                    INSERT INTO history(owner_id, conversation_id, message_id)
                    SELECT o, $2, m.id FROM unnest($6::bigint[]) AS o, m)
                SELECT id, ARRAY(SELECT ARRAY[s.id, s.last_seq] FROM s) FROM m
                """,
                sender_id,
                conversation_id,
                encoded,
                now_ms,
                targets,
                list(members),
            )
        if len(self._sends) >= _CACHE_LIMIT:
            self._sends.clear()
        self._sends[key] = (members, conversation_id, found)  # (committed)
        return StoredMessage(int(row[0]), conversation_id, found, _seqs(row[1]))

    async def _conversation(self, conn: asyncpg.Connection, members: tuple[int, ...]) -> int:
        """The conversation of these members, created if new (inside the send's transaction;
        a concurrent creator makes ON CONFLICT wait for its commit, then we read its row)."""
        conversation_id = await conn.fetchval(
            "INSERT INTO conversations(members) VALUES ($1::bigint[])"
            " ON CONFLICT (members) DO NOTHING RETURNING id",
            list(members),
        )
        if conversation_id is None:
            conversation_id = await conn.fetchval(
                "SELECT id FROM conversations WHERE members = $1::bigint[]", list(members)
            )
        else:
            return int(conversation_id)  # (not cached until committed: a rollback drops it)
        self._remember(members, int(conversation_id))
        return int(conversation_id)

    def _remember(self, members: tuple[int, ...], conversation_id: int) -> None:
        if len(self._conversations) >= _CACHE_LIMIT:
            self._conversations.clear()
        self._conversations[members] = conversation_id

    @_in_task
    async def pending_count(self, recipient_id: int) -> int:
        await self._acked(recipient_id)
        count = await (await self._db()).fetchval(
            "SELECT count(*) FROM pending WHERE recipient_id = $1", recipient_id
        )
        return int(count)

    @_in_task
    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        await self._acked(recipient_id)
        rows = await (await self._db()).fetch(
            _DELIVERY + "JOIN pending p ON p.message_id = m.id AND p.recipient_id = $1"
            " WHERE m.id > $2 ORDER BY m.id LIMIT $3",
            recipient_id,
            after_id,
            limit,
        )
        return _deliveries(rows)

    async def mark_delivered(self, recipient_id: int, message_ids: Sequence[int]) -> None:
        """Taken in at once, committed in the background: the one write that returns before
        its commit. An ack is fire-and-forget on every transport, and a connection that is
        waiting for one does not read the next (the custom driver handles a connection's
        requests one at a time), so waiting here would let a login on another connection
        count as pending what this session acked before it. Instead, this node's reads of
        the recipient's pending copies (pending_count, pending_after) wait for the acks it
        has taken in, as SQLite's one writer queue orders them. What it costs: a crash
        between the ack and its commit delivers the message once more (Rule 11: at least
        once; clients drop duplicate ids). Across nodes this order is not kept (the bus's
        session: a login on another node may see the copy once more). ``close`` waits."""
        task = asyncio.get_running_loop().create_task(
            self._mark_delivered(recipient_id, list(message_ids))
        )
        acks = self._acks.setdefault(recipient_id, set())
        acks.add(task)
        self._writes.add(task)

        def done(finished: asyncio.Task[None]) -> None:
            self._writes.discard(finished)
            acks.discard(finished)
            if not acks and self._acks.get(recipient_id) is acks:
                del self._acks[recipient_id]
            if not finished.cancelled() and finished.exception() is not None:
                log.error(
                    "an ack of %d message(s) was not stored; they stay pending",
                    len(message_ids),
                    exc_info=finished.exception(),
                )

        task.add_done_callback(done)

    # -- the cluster's bus (core.nats_bus): sequences, and what a gap missed ----------------
    @_in_task
    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        """Account id -> (its last_seq, whether the account is deleted), for these ids."""
        rows = await (await self._db()).fetch(
            "SELECT id, last_seq, deleted_at_ms IS NOT NULL FROM accounts"
            " WHERE id = ANY($1::bigint[])",
            list(account_ids),
        )
        return {row[0]: (row[1], row[2]) for row in rows}

    @_in_task
    async def bus_baseline(self, account_id: int) -> tuple[int, int]:
        """(last_seq, the id of the newest message in the account's history that someone
        else sent it), read in one snapshot: every message to the account with seq <=
        last_seq has an id <= that one, every later one a greater id (see the top)."""
        row = await (await self._db()).fetchrow(
            # (history_by_owner_message, walked from the newest: stops at the first found)
            "SELECT a.last_seq, coalesce((SELECT h.message_id FROM history h"
            " JOIN messages m ON m.id = h.message_id WHERE h.owner_id = a.id"
            " AND m.sender_id <> a.id ORDER BY h.message_id DESC LIMIT 1), 0)"
            " FROM accounts a WHERE a.id = $1",
            account_id,
        )
        return (int(row[0]), int(row[1])) if row else (0, 0)

    @_in_task
    async def received_between(
        self, recipient_id: int, after_id: int, below_id: int, limit: int
    ) -> list[Delivery]:
        """Messages others sent the recipient, still in its history, with after_id < id <
        below_id (0: no bound), oldest first: what a gap missed, acked or not."""
        rows = await (await self._db()).fetch(
            _DELIVERY + "JOIN history h ON h.message_id = m.id AND h.owner_id = $1"
            " AND h.conversation_id = m.conversation_id"
            " AND h.message_id > $2 AND h.message_id < $3"  # (history_by_owner_message's range)
            " WHERE m.sender_id <> $1 ORDER BY h.message_id LIMIT $4",
            recipient_id,
            after_id,
            below_id or _NO_BOUND,
            limit,
        )
        return _deliveries(rows)

    @_in_task
    async def pending_by_seq(
        self, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Delivery]]:
        """The recipient's pending copies with after_seq < seq <= up_to_seq, as (seq,
        delivery), oldest first (a recipient's seqs and ids rise together: see the top)."""
        await self._acked(recipient_id)
        rows = await (await self._db()).fetch(
            _DELIVERY.replace("SELECT m.id,", "SELECT p.seq, m.id,", 1)
            + "JOIN pending p ON p.message_id = m.id AND p.recipient_id = $1"
            " WHERE p.seq > $2 AND p.seq <= $3 ORDER BY p.seq LIMIT $4",
            recipient_id,
            after_seq,
            up_to_seq,
            limit,
        )
        return list(zip((row[0] for row in rows), _deliveries(r[1:] for r in rows), strict=True))

    async def _mark_delivered(self, recipient_id: int, message_ids: list[int]) -> None:
        await (await self._db()).execute(
            "DELETE FROM pending WHERE recipient_id = $1 AND message_id = ANY($2::bigint[])",
            recipient_id,
            message_ids,
        )

    async def _acked(self, recipient_id: int | None = None) -> None:
        """Wait for the acks of this recipient (None: of anyone) that this node has already
        taken in: what reads or rewrites pending copies must see them applied."""
        if recipient_id is None:
            acks = {task for tasks in self._acks.values() for task in tasks}
        else:
            acks = set(self._acks.get(recipient_id, ()))
        if acks:
            await asyncio.wait(acks)

    # -- history -----------------------------------------------------------------------------
    @_in_task
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

    @_in_task
    async def members(self, conversation_id: int) -> list[Member]:
        rows = await (await self._db()).fetch(
            "SELECT a.id, a.username, a.deleted_at_ms IS NOT NULL FROM conversations c,"
            " unnest(c.members) AS x(id) JOIN accounts a ON a.id = x.id"
            " WHERE c.id = $1 ORDER BY a.id",
            conversation_id,
        )
        return [Member(row[0], row[1], row[2]) for row in rows]

    @_in_task
    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        pool = await self._db()
        found = await pool.fetch(
            "SELECT conversation_id, max(message_id) AS last FROM history WHERE owner_id = $1"
            " GROUP BY conversation_id HAVING max(message_id) < $2 ORDER BY last DESC LIMIT $3",
            owner_id,
            before_id or _NO_BOUND,
            limit,
        )
        conversations = []
        for conversation_id, last_id in found:
            rows = await pool.fetch(_DELIVERY + "WHERE m.id = $2", owner_id, last_id)
            if not rows:  # (deleted since the first query ran)
                continue
            [last] = _deliveries(rows)
            read_up_to = await self.read_up_to(owner_id, conversation_id)
            others = [m for m in await self.members(conversation_id) if m.id != owner_id]
            conversations.append(
                Conversation(
                    conversation_id,
                    tuple(sorted(m.username for m in others)),
                    last,
                    await self._unread(pool, owner_id, conversation_id, read_up_to),
                    read_up_to,
                    tuple(sorted(m.username for m in others if m.deleted)),
                )
            )
        return conversations

    @_in_task
    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        rows = await (await self._db()).fetch(
            _DELIVERY + "JOIN history h ON h.message_id = m.id AND h.owner_id = $1"
            " AND h.conversation_id = $2 WHERE m.id < $3 ORDER BY m.id DESC LIMIT $4",
            owner_id,
            conversation_id,
            before_id or _NO_BOUND,
            limit,
        )
        return _deliveries(rows)

    @_in_task
    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        mark = await (await self._db()).fetchval(
            "SELECT up_to_id FROM read_state WHERE owner_id = $1 AND conversation_id = $2",
            owner_id,
            conversation_id,
        )
        return int(mark) if mark is not None else 0

    @_write
    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        pool = await self._db()
        async with pool.acquire() as conn, conn.transaction():
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
        read_up_to = await self.read_up_to(owner_id, conversation_id)
        return read_up_to, await self._unread(pool, owner_id, conversation_id, read_up_to)

    @_write
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
            held = [mid for mid, _, holds in found if holds]
            if not for_everyone:
                await conn.execute(
                    "DELETE FROM pending"
                    " WHERE recipient_id = $1 AND message_id = ANY($2::bigint[])",
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
                await conn.execute(_COLLECT, held)
                return {owner_id: held} if held else {}
            # Considered: what the caller holds or sent; anything else is not theirs to see.
            considered = [mid for mid, sender, holds in found if holds or sender == owner_id]
            foreign = [mid for mid, sender, holds in found if holds and sender != owner_id]
            if foreign:
                raise NotSender(foreign)  # (the transaction rolls back: nothing changed)
            copies = await conn.fetch(_HOLDERS, considered)
            removed: Removed = {}
            for owner, mid in copies:
                removed.setdefault(owner, []).append(mid)
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
        return {owner: sorted(mids) for owner, mids in removed.items()}

    @_write
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
                max_per_user if max_per_user is not None else _NO_BOUND,
            )
            await conn.execute(_COLLECT, sorted({row[0] for row in gone}))
        return len(gone)

    async def close(self) -> None:
        if self._writes:
            await asyncio.wait(set(self._writes))
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    # -- internals ---------------------------------------------------------------------------
    @staticmethod
    async def _unread(
        pool: asyncpg.Pool, owner_id: int, conversation_id: int, read_up_to: int
    ) -> int:
        count = await pool.fetchval(
            "SELECT count(*) FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = $1 AND h.conversation_id = $2 AND h.message_id > $3"
            " AND m.sender_id <> $1",
            owner_id,
            conversation_id,
            read_up_to,
        )
        return int(count)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """The pool's reset on release: nothing. asyncpg's default (RESET ALL, UNLISTEN, unlock
    advisory locks, CLOSE ALL) is a round trip per use, for session state we never set."""


def _seqs(pairs: Sequence[Sequence[int]]) -> dict[int, int]:
    """[[recipient id, seq], ...] as a dict."""
    return {int(pair[0]): int(pair[1]) for pair in pairs}


def _deliveries(rows: Iterable[Sequence[Any]]) -> list[Delivery]:
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


#: A regular expression no string matches.
_NOTHING = "[^\\s\\S]"


def glob_to_regex(glob: str) -> str:
    """A SQLite GLOB (``*``, ``?``, ``[...]`` classes with ``^`` to negate) as an anchored
    PostgreSQL regular expression; every other character is literal."""
    if "\x00" in glob:  # no name holds a NUL, and a PostgreSQL string cannot
        return _NOTHING
    out = ["^"]
    i = 0
    while i < len(glob):
        char = glob[i]
        if char == "*":
            out.append(".*")
        elif char == "?":
            out.append(".")
        elif char == "[":
            j = i + 1
            negate = j < len(glob) and glob[j] == "^"
            j += negate
            start = j
            if j < len(glob) and glob[j] == "]":  # a ']' first is a member
                j += 1
            while j < len(glob) and glob[j] != "]":
                j += 1
            if j >= len(glob):  # no closing ']': SQLite matches nothing
                return _NOTHING
            # (In a bracket a backslash escapes: keep '\\' and '[' (as in "[:") literal.)
            members = glob[start:j].replace("\\", "\\\\").replace("[", "\\[")
            out.append("[" + ("^" if negate else "") + members + "]")
            i = j + 1
            continue
        else:
            out.append(char if char.isalnum() else "\\" + char)
        i += 1
    out.append("$")
    return "".join(out)


__all__ = ["POOL_SIZE", "PostgresStore", "glob_to_regex"]
