"""SqliteStore: the Store on one SQLite file in WAL mode (schema: ``core.migrations``).

Two connections. Every write goes through a :class:`~core.sqlite_writer.GroupWriter` on the
*writer* connection: writes that arrive together share one transaction (group commit), and
each write returns only once its group is committed (Rules 9, 16). Reads run synchronously
on the event loop on a second, *reader* connection; in WAL mode it sees committed
transactions only, never a staged row. (``:memory:`` has one connection for both.)

Where the rest lives: ``core.sqlite_send`` stages sends (the hot path), ``core.sqlite_deletes``
the deleting jobs, ``core.sqlite_cache`` the caches that keep statements off the hot paths
(who exists, names, conversation members), ``core.sqlite_writer`` the group commit.

Durability (DESIGN Rules 9 and 16; kept as it was for issue 10). WAL with
synchronous=NORMAL: COMMIT writes the transaction's frames to the WAL file before it
returns, so a *process* crash (``kill -9``, what the durability tests do under load) loses
nothing acknowledged: the OS has the bytes. Only an OS crash or power loss can lose the
commits since the last checkpoint's fsync; ``synchronous='FULL'`` (``wirechat server --sync
FULL``) closes that gap at an fsync per group, committed on a thread of its own (see
core.sqlite_writer). Group commit changes how many sends share a commit, not what a
commit promises.

Checkpoints (issue 10). SQLite's own ran inside the COMMIT that crossed ~1,000 WAL pages,
on the loop, with its two fsyncs: ~17 us of wall per send at saturation. The writer now
runs them on a thread of its own every ``CHECKPOINT_EVERY`` commits *with its writes held*
(core.sqlite_writer). Tried before and dropped: PASSIVE checkpoints from a helper thread
while the writer went on; they never caught up with it, so the WAL never restarted and kept
growing (each send then cost ~27 us more CPU). Holding the writes is what lets the WAL
start over. Durability is unchanged: a checkpoint copies committed pages only.

temp_store=MEMORY on the writer: a multi-row INSERT inside a transaction keeps a statement
journal (the pages it changes, to undo just that statement), and past 64 KiB SQLite spills
it to a file in /var/tmp, created and unlinked per statement; a group of 32 sends from 32
users touched enough history pages to spill on every group (measured with strace: an
open/write/unlink per commit). In memory it costs at most a group's pages.

Nothing on the loop may take much more than a millisecond (issue 14): ``list_accounts``
turns a pattern's literal prefix into an index range and gives a query that runs past its
budget to a scan thread with a connection of its own; ``delete_account`` and
``prune_history`` stage their deletes in chunks, a loop turn each (the writer keeps their
transaction open across turns; readers see the state before it until it commits); retention
commits every ``sqlite_deletes.COUNT_SPAN`` copies (by count) and every ``AGE_SPAN`` message
ids (by age), so a send waits for a part, not for the whole prune.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from pathlib import Path
from typing import Any

from core import limits, migrations, sqlite_deletes, sqlite_send
from core.sqlite_cache import StoreCache, select_live_ids
from core.sqlite_deletes import CHUNK, NOT_HIDDEN
from core.sqlite_send import SendStager
from core.sqlite_writer import Commit, GroupWriter
from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.store_conversations import conversation_list
from core.store_glob import prefix_range
from core.types import Conversation, Delivery

#: Larger than any SQLite rowid: "no upper bound" for id < ? queries.
_NO_BOUND = 2**63 - 1
#: What a list_accounts query may spend on the loop before it moves to the scan thread.
LIST_BUDGET_S = 0.0005
#: SQLite VM instructions between two looks at that budget (a look costs ~0.2 us).
_PROGRESS_STEPS = 2_000

#: Page cache of the writer connection (KiB; SQLite's default is 2 MiB). Its hot set is the
#: right-hand leaves of messages and pending, a leaf per (owner, conversation) written to, and
#: the interior pages above them; at 2 MiB a busy store re-read pages through the WAL on every
#: group (measured with mmap beside it: 13 -> 10-12 us of CPU and 20 -> 10-15 us of wall per
#: send, groups of 32). The readers keep the default: their pages (a scan's above all) would
#: only add to the server's RSS, which the hostile scene bounds.
CACHE_KIB = 16_384
#: The WAL file is cut back to this when it starts over after a checkpoint (a large
#: transaction, a deletion, may have grown it far beyond what the checkpoints keep it at).
WAL_KEEP_BYTES = 32 << 20

_MESSAGE_COLUMNS = "m.id, m.sender_id, m.body, m.sent_at_ms, m.conversation_id"
#: The newest message of conversation c the owner (``?``) holds.
_LAST_HELD = (
    "(SELECT m.id FROM messages m WHERE m.conversation_id = c.conversation_id"
    f" AND {NOT_HIDDEN} ORDER BY m.id DESC LIMIT 1)"
)
_Row = tuple[int, int, str, int, int]
_Db = sqlite3.Connection
#: A part of retention (``sqlite_deletes.prune_past_limit``, ``prune_old``): (db, cache, the
#: limit, after, carry) -> (copies pruned, the next part's after or 0, its carry).
_Part = Callable[[_Db, StoreCache, int, int, int], Generator[None, None, tuple[int, int, int]]]


class SqliteStore(Store):
    """SQLite in WAL mode. ``path=':memory:'`` for tests and protocol-only benches.

    synchronous=NORMAL in WAL mode makes every commit survive a crash of the *process*
    (kill -9): the WAL is written before the commit returns; only an OS crash or power loss
    can lose the last commits. ``synchronous='FULL'`` closes that gap at an fsync per
    commit (one per group of sends). Opening a file written by an older wirechat upgrades
    it in place (core.migrations).
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
        self._db = self._connect(self.path)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.execute("PRAGMA temp_store=MEMORY")  # statement journals (module docstring)
        migrations.upgrade(self._db)
        on_disk = self.path != ":memory:" and not self.path.startswith("file:")
        self._read = self._connect(self.path) if on_disk else self._db
        if on_disk:
            self._read.execute("PRAGMA query_only=ON")
            self._db.execute(f"PRAGMA cache_size=-{CACHE_KIB}")
            # Checkpoints off the loop (core.sqlite_writer): none inside a COMMIT.
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_KEEP_BYTES}")
        self._checkpoint_db: sqlite3.Connection | None = None  # opened on its thread
        self._cache = StoreCache(self._read)
        self._stage_sends = SendStager(self._cache)
        sqlite_send.prime(self._db)  # (every multi-row INSERT prepared now, not under load)
        self._writer = GroupWriter(
            self._db,
            threaded=on_disk and synchronous.upper() in {"FULL", "EXTRA"},
            keep_going=(DuplicateAccount, NotSender),
            on_rollback=self._cache.forget,
            checkpoint=self._wal_checkpoint if on_disk else None,
        )
        # (into the instance's dict: a subclass may hide it with a property, as
        # tests/integration/test_pipelined_sends_continued.py does to leave sends unstaged)
        vars(self)["add_message_future"] = partial(self._writer.submit, self._stage_sends)
        # One helper thread, with a connection of its own (WAL: a reader beside the others),
        # for what must not run on the loop: long list_accounts scans.
        self._helper = (
            ThreadPoolExecutor(1, thread_name_prefix="wirechat-sqlite") if on_disk else None
        )
        self._helper_db: sqlite3.Connection | None = None  # opened on the helper thread

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        # Statement cache: a multi-row INSERT has a text per row count (up to
        # core.sqlite_send.ROWS_PER_INSERT per table), and re-preparing one costs more than
        # running it.
        return sqlite3.connect(
            path, isolation_level=None, check_same_thread=False, cached_statements=1024
        )

    @property
    def commits(self) -> int:
        """Groups committed so far (each one transaction, however many writes it held)."""
        return self._writer.commits

    # -- accounts ----------------------------------------------------------------------------
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        def job(db: _Db) -> int:
            try:
                cursor = db.execute(
                    "INSERT INTO accounts(username, password_hash, created_at_ms) VALUES (?, ?, ?)",
                    (username, password_hash, now_ms),
                )
            except sqlite3.IntegrityError as exc:  # (one statement: nothing was written)
                raise DuplicateAccount(username) from exc
            assert cursor.lastrowid is not None
            return cursor.lastrowid

        return await self._writer.run(job)

    async def find_account(self, username: str) -> Account | None:
        row = self._read.execute(
            "SELECT id, username, password_hash FROM accounts"
            " WHERE username = ? AND deleted_at_ms IS NULL",
            (username,),
        ).fetchone()
        return Account(*row) if row else None

    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        return select_live_ids(self._read, usernames)

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        # The pattern's literal prefix bounds an index range; what matches inside it is
        # GLOB's to say. A query that outruns its loop budget (a leading wildcard over many
        # accounts) is run again on the scan thread: SQLite releases the GIL while it scans.
        prefix, above = prefix_range(glob)
        lower = ("username >= ?", prefix) if prefix > after else ("username > ?", after)
        where = ["deleted_at_ms IS NULL", "username GLOB ?", lower[0]]
        args: tuple[object, ...] = (glob, lower[1])
        if above is not None:
            where.append("username < ?")
            args += (above,)
        query = (
            f"SELECT username FROM accounts WHERE {' AND '.join(where)} ORDER BY username LIMIT ?"
        )
        args += (limit,)
        return [row[0] for row in await self._bounded(query, args)]

    async def _bounded(self, query: str, args: tuple[object, ...]) -> list[Any]:
        """The rows of a read that may scan far: on the loop while it stays within
        LIST_BUDGET_S, else again on the scan thread (SQLite releases the GIL while it scans).
        list_accounts with a leading wildcard; and, in schema v4, history reads that walk
        past many messages hidden from the owner (deleted for them, pruned)."""
        if self._helper is None:
            return self._read.execute(query, args).fetchall()
        deadline = time.perf_counter() + LIST_BUDGET_S
        self._read.set_progress_handler(lambda: time.perf_counter() > deadline, _PROGRESS_STEPS)
        try:
            return self._read.execute(query, args).fetchall()
        except sqlite3.OperationalError as exc:
            if "interrupt" not in str(exc):
                raise
        finally:
            self._read.set_progress_handler(None, 0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._helper, self._scan, query, args)

    def _wal_checkpoint(self) -> tuple[int, int, int]:
        """On the writer's checkpoint thread, writes held (core.sqlite_writer): copy the WAL
        into the database. (busy, WAL frames, frames copied), as SQLite reports them."""
        if self._checkpoint_db is None:
            self._checkpoint_db = self._connect(self.path)
        busy, frames, copied = self._checkpoint_db.execute(
            "PRAGMA wal_checkpoint(PASSIVE)"
        ).fetchone()
        return busy, frames, copied

    @property
    def checkpoints(self) -> int:
        """WAL checkpoints done off the loop so far."""
        return self._writer.checkpoints

    def _helper_connection(self) -> sqlite3.Connection:
        if self._helper_db is None:
            self._helper_db = self._connect(self.path)
        return self._helper_db

    def _scan(self, query: str, args: tuple[object, ...]) -> list[Any]:
        """On the helper thread."""
        return self._helper_connection().execute(query, args).fetchall()

    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        cache = self._cache
        return await self._writer.run_chunked(
            lambda db: sqlite_deletes.delete_account(db, cache, account_id, purge_sent, now_ms)
        )

    # -- account security (issue 13) ---------------------------------------------------------
    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        def job(db: _Db) -> None:
            db.execute(
                "UPDATE accounts SET password_hash = ? WHERE id = ? AND deleted_at_ms IS NULL",
                (password_hash, account_id),
            )

        await self._writer.run(job)

    async def add_resume_token(
        self, account_id: int, token_hash: bytes, expires_at_ms: int
    ) -> None:
        def job(db: _Db) -> None:
            db.execute(
                "INSERT OR REPLACE INTO resume_tokens(token_hash, account_id, expires_at_ms)"
                " VALUES (?, ?, ?)",
                (token_hash, account_id, expires_at_ms),
            )
            # Past the cap, the tokens that expire first make room (an indexed range).
            db.execute(
                "DELETE FROM resume_tokens WHERE token_hash IN (SELECT token_hash"
                " FROM resume_tokens WHERE account_id = ? ORDER BY expires_at_ms DESC,"
                " token_hash DESC LIMIT -1 OFFSET ?)",
                (account_id, limits.MAX_RESUME_TOKENS_PER_ACCOUNT),
            )

        await self._writer.run(job)

    async def resume_account(self, token_hash: bytes, now_ms: int) -> tuple[int, str] | None:
        row = self._read.execute(
            "SELECT t.account_id, t.expires_at_ms, a.username, a.deleted_at_ms"
            " FROM resume_tokens t JOIN accounts a ON a.id = t.account_id"
            " WHERE t.token_hash = ?",
            (token_hash,),
        ).fetchone()
        if row is None:
            return None
        account_id, expires_at_ms, username, deleted_at_ms = row
        if expires_at_ms <= now_ms or deleted_at_ms is not None:
            await self.revoke_resume_token(token_hash)
            return None
        return account_id, username

    async def revoke_resume_token(self, token_hash: bytes) -> None:
        def job(db: _Db) -> None:
            db.execute("DELETE FROM resume_tokens WHERE token_hash = ?", (token_hash,))

        await self._writer.run(job)

    async def revoke_resume_tokens(self, account_id: int) -> None:
        def job(db: _Db) -> None:
            db.execute("DELETE FROM resume_tokens WHERE account_id = ?", (account_id,))

        await self._writer.run(job)

    # -- messages ----------------------------------------------------------------------------
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        stage = self._stage_sends
        message_id, conversation_id, found = await self._writer.submit(
            stage, sender_id, body, now_ms, recipients
        )
        return StoredMessage(message_id, conversation_id, found or {})  # (a dict of its own)

    #: ``add_message_future(sender_id, body, now_ms, recipients)``: ``add_message`` queued at
    #: the call (not when awaited), as the writer's ``Commit`` (awaitable), whose result is
    #: ``add_message_now``'s tuple (core.sqlite_send.Stored: message id, conversation id, the
    #: names stored for -> their ids; read only): what ChatService.send awaits on this store,
    #: with no coroutine around it. A driver that waits for the commit itself
    #: (transports/custom/_server.py, through ``ChatService.send_begun``) gets the Commit and
    #: finishes the send (``send_stored``) from its ``wake_directly`` (core.sqlite_writer).
    #: A ``partial`` of the writer's ``submit``, set when the store opens: no Python frame of
    #: the store's per send (~400 instructions).
    add_message_future: Callable[[int, str, int, Sequence[str]], Commit]

    async def pending_count(self, recipient_id: int) -> int:
        row = self._read.execute(
            "SELECT count(*) FROM pending WHERE recipient_id = ?", (recipient_id,)
        ).fetchone()
        return int(row[0])

    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        rows = self._read.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM pending p JOIN messages m ON m.id = p.message_id"
            " WHERE p.recipient_id = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
            (recipient_id, after_id, limit),
        )
        return self._deliveries(recipient_id, rows)

    async def mark_delivered(self, recipient_id: int, message_ids: Sequence[int]) -> None:
        def job(db: _Db) -> None:
            db.executemany(
                "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                [(recipient_id, mid) for mid in message_ids],
            )

        await self._writer.run(job)

    # -- history -----------------------------------------------------------------------------

    async def conversation_of(self, member_ids: set[int]) -> int:
        return self._cache.conversation_id(self._read, migrations.members_key(member_ids))

    async def members(self, conversation_id: int) -> list[Member]:
        cache = self._cache
        return [Member(i, *cache.person(i)) for i in cache.member_ids(conversation_id)]

    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        if self._cache.person(owner_id)[1]:
            return []  # (a deleted account's history went with it)
        found = await self._bounded(
            f"SELECT c.conversation_id, {_LAST_HELD} AS last FROM memberships c"
            " WHERE c.account_id = ? AND last < ? ORDER BY last DESC LIMIT ?",
            (owner_id, owner_id, before_id or _NO_BOUND, limit),
        )
        return await conversation_list(self, owner_id, found, self._last_delivery, self._unread)

    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        if not self._holds_any(owner_id, conversation_id):
            return []
        rows = await self._bounded(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m"
            f" WHERE m.conversation_id = ? AND m.id < ? AND {NOT_HIDDEN}"
            " ORDER BY m.id DESC LIMIT ?",
            (conversation_id, before_id or _NO_BOUND, owner_id, limit),
        )
        return self._deliveries(owner_id, rows)

    def _holds_any(self, owner_id: int, conversation_id: int) -> bool:
        """Whether the conversation can be in the owner's history: a live member's."""
        return (
            owner_id in self._cache.member_ids(conversation_id)
            and not (self._cache.person(owner_id)[1])
        )

    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        row = self._read.execute(
            "SELECT up_to_id FROM read_state WHERE owner_id = ? AND conversation_id = ?",
            (owner_id, conversation_id),
        ).fetchone()
        return int(row[0]) if row else 0

    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        def job(db: _Db) -> None:
            last = sqlite_deletes.last_held(db, self._cache, owner_id, conversation_id)
            mark = min(up_to_id, last)
            if mark > 0:
                db.execute(
                    "INSERT INTO read_state(owner_id, conversation_id, up_to_id) VALUES (?, ?, ?)"
                    " ON CONFLICT(owner_id, conversation_id)"
                    " DO UPDATE SET up_to_id = max(up_to_id, excluded.up_to_id)",
                    (owner_id, conversation_id, mark),
                )

        await self._writer.run(job)
        read_up_to = await self.read_up_to(owner_id, conversation_id)
        return read_up_to, await self._unread(owner_id, conversation_id, read_up_to)

    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        cache = self._cache
        return await self._writer.run(
            lambda db: sqlite_deletes.delete_messages(db, cache, owner_id, ids, for_everyone)
        )

    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        """By count, then by age, each in parts of their own (the copies past the limit
        counted the old ones; the age rule skips what they hid, which gives what one
        transaction for both would)."""
        pruned = 0
        if max_per_user is not None:
            pruned += await self._in_parts(sqlite_deletes.prune_past_limit, max_per_user)
        if older_than_ms is not None:
            pruned += await self._in_parts(sqlite_deletes.prune_old, older_than_ms)
        return pruned

    async def _in_parts(self, part: _Part, rule: int) -> int:
        """Run a retention job a transaction at a time: each part returns the copies it
        pruned and where the next one starts (0: it was the last)."""
        cache, pruned, after, carry = self._cache, 0, 0, 0
        while True:

            def job(
                db: _Db, after: int = after, carry: int = carry
            ) -> Generator[None, None, tuple[int, int, int]]:
                return part(db, cache, rule, after, carry)

            done, after, carry = await self._writer.run_chunked(job)
            pruned += done
            if not after:
                return pruned

    async def close(self) -> None:
        await self._writer.aclose()
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            if self._helper_db is not None:
                self._helper_db.close()
        if self._checkpoint_db is not None:
            self._checkpoint_db.close()
        if self._read is not self._db:
            self._read.close()
        self._db.close()

    # -- internals ---------------------------------------------------------------------------

    def _deliveries(self, viewer_id: int, rows: Iterable[_Row]) -> list[Delivery]:
        """Message rows as the viewer sees them: the other participants, a deleted sender."""
        person, member_ids = self._cache.person, self._cache.member_ids
        out = []
        for message_id, sender_id, body, sent_at_ms, conversation_id in rows:
            sender, sender_deleted = person(sender_id)
            others = tuple(
                sorted(person(i)[0] for i in member_ids(conversation_id) if i != viewer_id)
            )
            out.append(
                Delivery(
                    message_id, sender, body, sent_at_ms, others, sender_deleted, conversation_id
                )
            )
        return out

    async def _last_delivery(self, owner_id: int, message_id: int) -> Delivery | None:
        """A message as its owner sees it; None if it is gone."""
        row = self._read.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?", (message_id,)
        ).fetchone()
        return None if row is None else self._deliveries(owner_id, [row])[0]

    async def _unread(self, owner_id: int, conversation_id: int, read_up_to: int) -> int:
        if not self._holds_any(owner_id, conversation_id):
            return 0
        [row] = await self._bounded(
            "SELECT count(*) FROM messages m WHERE m.conversation_id = ? AND m.id > ?"
            f" AND m.sender_id != ? AND {NOT_HIDDEN}",
            (conversation_id, read_up_to, owner_id, owner_id),
        )
        return int(row[0])


__all__ = ["CHUNK", "LIST_BUDGET_S", "SqliteStore"]
