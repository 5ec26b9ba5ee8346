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

The modules. Accounts, tokens and messages are here; history (Rules 19-25) is in
core.postgres_history; what the cluster's bus reads (sequences, catch-up reads) in
core.postgres_feed; the pool, the shared SQL and the notice log (read marks, deleted ids and
"end every session" in the user's sequence, so a bus that lost one repairs it) in
core.postgres_base.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)

from core import limits
from core.postgres_base import (
    CACHE_LIMIT,
    COLLECT,
    DELIVERY,
    POOL_SIZE,
    LoggedNotice,
    clock_ms,
    deliveries,
    in_task,
    seqs_of,
    write,
)
from core.postgres_feed import PostgresFeed
from core.postgres_history import PostgresHistory
from core.store import Account, DuplicateAccount, Removed, StoredMessage
from core.store_glob import prefix_range
from core.types import CloseReason, Delivery, MessagesDeleted

log = logging.getLogger(__name__)

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


class PostgresStore(PostgresHistory, PostgresFeed):
    """PostgreSQL at ``dsn`` (``postgresql://user[:password]@host:port/dbname``). The pool
    opens, and the schema is upgraded, on first use (or :meth:`open`). Accounts and
    messages are here; history in core.postgres_history, the cluster's sequences in
    core.postgres_feed, the pool and the notice log in core.postgres_base."""

    async def open(self) -> PostgresStore:
        """Connect and upgrade the schema (idempotent)."""
        await super().open()
        return self

    # -- accounts ----------------------------------------------------------------------------
    @write
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

    @in_task
    async def find_account(self, username: str) -> Account | None:
        row = await (await self._db()).fetchrow(
            "SELECT id, username, password_hash FROM accounts"
            " WHERE username = $1 AND deleted_at_ms IS NULL",
            username,
        )
        return Account(row[0], row[1], row[2]) if row else None

    @in_task
    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        rows = await (await self._db()).fetch(
            "SELECT username, id FROM accounts"
            " WHERE username = ANY($1::text[]) AND deleted_at_ms IS NULL",
            list(usernames),
        )
        return {row[0]: row[1] for row in rows}

    @in_task
    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        # The pattern's literal prefix bounds an index range (COLLATE "C": byte order);
        # what matches inside it is the regular expression's to say.
        if "\x00" in glob:  # no name holds a NUL (and a PostgreSQL string cannot)
            return []
        # Names above "ab\x00..." are the names above "ab" (none holds a NUL): same answer.
        after = after.split("\x00", 1)[0]
        prefix, above = prefix_range(glob)
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

    @write
    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        await self._acked()
        removed: Removed = {}
        async with (await self._db()).acquire() as conn, conn.transaction():
            # The row lock every send to or from this account takes first (see the top);
            # with notices to log, the rows of those who hold its unacked copies too, all
            # in id order, as a send takes them (so never a deadlock with one).
            locked = [account_id]
            if purge_sent and self.notice_origin is not None:
                rows = await conn.fetch(
                    "SELECT DISTINCT p.recipient_id FROM pending p JOIN messages m"
                    " ON m.id = p.message_id WHERE m.sender_id = $1 AND p.recipient_id <> $1",
                    account_id,
                )
                locked += [int(row[0]) for row in rows]
            await self._lock_accounts(conn, locked)
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
            await conn.execute(COLLECT, sorted(doomed))
            await conn.execute("DELETE FROM resume_tokens WHERE account_id = $1", account_id)
            await conn.execute(
                "UPDATE accounts SET password_hash = '', deleted_at_ms = $2 WHERE id = $1",
                account_id,
                now_ms,
            )
            removed = {owner: sorted(ids) for owner, ids in removed.items()}
            notices: list[tuple[int, LoggedNotice]] = [
                (owner, MessagesDeleted(tuple(ids))) for owner, ids in removed.items()
            ]
            logged = await self._log_notices(conn, notices, now_ms)
        self._claimable(logged)
        return removed

    # -- account security (issue 13) ---------------------------------------------------------
    @write
    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        await (await self._db()).execute(
            "UPDATE accounts SET password_hash = $2 WHERE id = $1 AND deleted_at_ms IS NULL",
            account_id,
            password_hash,
        )

    @write
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

    @in_task
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

    @write
    async def revoke_resume_token(self, token_hash: bytes) -> None:
        await (await self._db()).execute(
            "DELETE FROM resume_tokens WHERE token_hash = $1", token_hash
        )

    @write
    async def revoke_resume_tokens(self, account_id: int) -> None:
        """Forget every token of the account: the user's other sessions end (a password
        change). With a cluster's bus that "end every session" is logged in the user's
        sequence, so a node that missed it on the bus ends them at its next sweep."""
        async with (await self._db()).acquire() as conn, conn.transaction():
            if self.notice_origin is not None:
                await self._lock_accounts(conn, [account_id])
            await conn.execute("DELETE FROM resume_tokens WHERE account_id = $1", account_id)
            logged = await self._log_notices(
                conn, [(account_id, CloseReason.PASSWORD_CHANGED)], clock_ms()
            )
        self._claimable(logged)

    # -- messages ----------------------------------------------------------------------------
    @write
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
                return StoredMessage(int(row[0]), conversation_id, dict(found), seqs_of(row[1]))
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
        if len(self._sends) >= CACHE_LIMIT:
            self._sends.clear()
        self._sends[key] = (members, conversation_id, found)  # (committed)
        return StoredMessage(int(row[0]), conversation_id, found, seqs_of(row[1]))

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

    @in_task
    async def pending_count(self, recipient_id: int) -> int:
        await self._acked(recipient_id)
        count = await (await self._db()).fetchval(
            "SELECT count(*) FROM pending WHERE recipient_id = $1", recipient_id
        )
        return int(count)

    @in_task
    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        await self._acked(recipient_id)
        rows = await (await self._db()).fetch(
            DELIVERY + "JOIN pending p ON p.message_id = m.id AND p.recipient_id = $1"
            " WHERE m.id > $2 ORDER BY m.id LIMIT $3",
            recipient_id,
            after_id,
            limit,
        )
        return deliveries(rows)

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

    async def _mark_delivered(self, recipient_id: int, message_ids: list[int]) -> None:
        await (await self._db()).execute(
            "DELETE FROM pending WHERE recipient_id = $1 AND message_id = ANY($2::bigint[])",
            recipient_id,
            message_ids,
        )


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
