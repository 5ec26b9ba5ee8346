"""SqliteStore: the Store on one SQLite file in WAL mode (schema: ``core.migrations``).

Two connections. Every write goes through a :class:`~core.sqlite_writer.GroupWriter` on the
*writer* connection: writes that arrive together share one transaction (group commit), and
each write returns only once its group is committed (Rules 9, 16). Reads run synchronously
on the event loop on a second, *reader* connection; in WAL mode it sees committed
transactions only, never a staged row. (``:memory:`` has one connection for both.)

Checkpoints stay SQLite's own (the committing connection, every ~1,000 WAL pages). Tried
and dropped: PASSIVE checkpoints from a helper thread. Under a steady write load they never
catch up with the writer, so the WAL never restarts and keeps growing, and each send cost
~27 us more CPU and ~120 us more wall time than with the inline checkpoint (measured).

Send is the hot path: one staged job of one SELECT (who exists), one conversation lookup
(cached after its first use), one INSERT into messages, and one multi-row INSERT each into
pending (a row per recipient) and history (a row per participant, the sender's included).
History and pending carry no secondary index and no foreign key (see core.migrations): the
copies of one message are found through its conversation's members.

Nothing on the loop may take much more than a millisecond (issue 14): ``list_accounts``
turns a pattern's literal prefix into an index range and gives a query that runs past its
budget to a scan thread with a connection of its own; ``delete_account`` and
``prune_history`` stage their deletes in chunks, a loop turn each (the writer keeps their
transaction open across turns; readers see the state before it until it commits).

Two caches keep Delivery construction free of lookups: account id -> (name, deleted), and
conversation id -> member ids (conversations never change their members). A rolled-back
group empties them (they may hold a staged row).
"""

from __future__ import annotations

import asyncio
import functools
import sqlite3
import time
from collections.abc import Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from core import limits, migrations
from core.sqlite_writer import GroupWriter
from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.types import Conversation, Delivery

#: Larger than any SQLite rowid: "no upper bound" for id < ? queries.
_NO_BOUND = 2**63 - 1
#: Cached conversations before the cache is emptied (each entry is a few ids).
_CACHE_LIMIT = 100_000
#: What a list_accounts query may spend on the loop before it moves to the scan thread.
LIST_BUDGET_S = 0.0005
#: SQLite VM instructions between two looks at that budget (a look costs ~0.2 us).
_PROGRESS_STEPS = 2_000
#: Rows a chunked delete handles per loop turn (a row is a few statements: ~1-2 ms a turn here).
CHUNK = 50
#: Message ids a purge looks through per loop turn, whoever sent them.
_ID_WINDOW = 4_096

_MESSAGE_COLUMNS = "m.id, m.sender_id, m.body, m.sent_at_ms, m.conversation_id"
_Row = tuple[int, int, str, int, int]
_Db = sqlite3.Connection
_Copy = tuple[int, int, int]  # (owner, conversation, message)
_Send = tuple[int, str, int, Sequence[str]]  # add_message's arguments
#: Rows per multi-row INSERT at most (and so distinct statement texts per table).
_ROWS_PER_INSERT = 128


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
        migrations.upgrade(self._db)
        on_disk = self.path != ":memory:" and not self.path.startswith("file:")
        self._read = self._connect(self.path) if on_disk else self._db
        if on_disk:
            self._read.execute("PRAGMA query_only=ON")
        self._writer = GroupWriter(
            self._db,
            threaded=on_disk and synchronous.upper() in {"FULL", "EXTRA"},
            keep_going=(DuplicateAccount, NotSender),
            on_rollback=self._forget,
        )
        # One helper thread, with a connection of its own (WAL: a reader beside the others),
        # for what must not run on the loop: long list_accounts scans.
        self._helper = (
            ThreadPoolExecutor(1, thread_name_prefix="wirechat-sqlite") if on_disk else None
        )
        self._helper_db: sqlite3.Connection | None = None  # opened on the helper thread
        # Accounts whose deletion has been staged. A deletion takes several loop turns and
        # the service ends the user's other sessions only after it; a send they make
        # meanwhile must not store a message from an account that is going (Rule 15).
        self._deleted: set[int] = set()
        self._people: dict[int, tuple[str, bool]] = {}  # account id -> (name, deleted)
        self._members: dict[int, tuple[int, ...]] = {}  # conversation id -> member ids
        self._conversations: dict[str, int] = {}  # members key -> conversation id

    @staticmethod
    def _connect(path: str) -> sqlite3.Connection:
        # Statement cache: a multi-row INSERT has a text per row count (up to
        # _ROWS_PER_INSERT per table), and re-preparing one costs more than running it.
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
        return self._live_ids(self._read, usernames)

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        # The pattern's literal prefix bounds an index range; what matches inside it is
        # GLOB's to say. A query that outruns its loop budget (a leading wildcard over many
        # accounts) is run again on the scan thread: SQLite releases the GIL while it scans.
        prefix, above = _prefix_range(glob)
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
        if self._helper is None:
            return [row[0] for row in self._read.execute(query, args)]
        deadline = time.perf_counter() + LIST_BUDGET_S
        self._read.set_progress_handler(lambda: time.perf_counter() > deadline, _PROGRESS_STEPS)
        try:
            return [row[0] for row in self._read.execute(query, args)]
        except sqlite3.OperationalError as exc:
            if "interrupt" not in str(exc):
                raise
        finally:
            self._read.set_progress_handler(None, 0)
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._helper, self._scan, query, args)

    def _helper_connection(self) -> sqlite3.Connection:
        if self._helper_db is None:
            self._helper_db = self._connect(self.path)
        return self._helper_db

    def _scan(self, query: str, args: tuple[object, ...]) -> list[str]:
        """On the helper thread."""
        return [row[0] for row in self._helper_connection().execute(query, args)]

    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        return await self._writer.run_chunked(
            lambda db: self._delete_account(db, account_id, purge_sent, now_ms)
        )

    def _delete_account(
        self, db: _Db, account_id: int, purge_sent: bool, now_ms: int
    ) -> Generator[None, None, Removed]:
        """A chunked job: one transaction, CHUNK rows per loop turn."""
        self._deleted.add(account_id)
        removed: Removed = {}
        # The account's own copies, in key order, a chunk at a time.
        while True:
            own = db.execute(
                "SELECT conversation_id, message_id FROM history WHERE owner_id = ?"
                " ORDER BY conversation_id, message_id LIMIT ?",
                (account_id, CHUNK),
            ).fetchall()
            if not own:
                break
            db.execute(
                "DELETE FROM history"
                " WHERE owner_id = ? AND (conversation_id, message_id) <= (?, ?)",
                (account_id, *own[-1]),
            )
            self._collect(db, (message_id for _, message_id in own))
            yield
        while db.execute(
            "DELETE FROM pending WHERE recipient_id = ? AND message_id IN"
            " (SELECT message_id FROM pending WHERE recipient_id = ? LIMIT ?)",
            (account_id, account_id, CHUNK),
        ).rowcount:
            yield
        db.execute("DELETE FROM read_state WHERE owner_id = ?", (account_id,))
        if purge_sent:
            # Still pending = never acked by that recipient (Rule 15's "undelivered").
            # The sender's messages are found by walking message ids, a window per turn.
            (last,) = db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
            low = 0
            while low < last:
                sent = db.execute(
                    "SELECT id, conversation_id FROM messages"
                    " WHERE id > ? AND id <= ? AND sender_id = ? ORDER BY id LIMIT ?",
                    (low, low + _ID_WINDOW, account_id, CHUNK),
                ).fetchall()
                low = sent[-1][0] if len(sent) == CHUNK else low + _ID_WINDOW
                copies = [
                    (owner, conversation, message_id)
                    for message_id, conversation in sent
                    for owner in self._member_ids(conversation, db)
                    if owner != account_id and self._pending(db, owner, message_id)
                ]
                if copies:
                    db.executemany(
                        "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                        [(owner, message_id) for owner, _, message_id in copies],
                    )
                    self._delete_copies(db, copies)
                    for owner, _, message_id in copies:
                        removed.setdefault(owner, []).append(message_id)
                    self._collect(db, (message_id for _, _, message_id in copies))
                yield
        db.execute("DELETE FROM resume_tokens WHERE account_id = ?", (account_id,))
        db.execute(
            "UPDATE accounts SET password_hash = '', deleted_at_ms = ? WHERE id = ?",
            (now_ms, account_id),
        )
        self._people.pop(account_id, None)
        return removed

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
        outcome: StoredMessage = await self._writer.run_batched(
            self._add_messages, (sender_id, body, now_ms, recipients)
        )
        return outcome

    def _add_messages(self, db: _Db, sends: list[_Send]) -> list[StoredMessage]:
        """The sends of one group, staged together: one SELECT of who exists, one multi-row
        INSERT each into messages, pending and history (a statement per row would cost
        more than the row). Who exists is decided in the transaction that stores every
        copy, so an account deleted or created concurrently cannot leave a pending row
        without an account."""
        if len(sends) == 1:
            return [self._add_one(db, *sends[0])]
        live = self._live_ids(db, list({name for send in sends for name in send[3]}))
        known = self._conversations
        stored: list[tuple[dict[str, int], int, int]] = []  # (recipients, conversation, sender)
        rows: list[object] = []  # the message rows, flat, in call order
        for sender_id, body, now_ms, recipients in sends:
            found = {name: live[name] for name in recipients if name in live}
            if not found or sender_id in self._deleted:
                stored.append((found, 0, sender_id))
                continue
            key = migrations.members_key({sender_id, *found.values()})
            conversation_id = known.get(key) or self._new_conversation(db, key)
            stored.append((found, conversation_id, sender_id))
            rows += (sender_id, conversation_id, body, now_ms)
        count = len(rows) // 4
        if not count:
            return [StoredMessage(0, 0, {}) for _ in sends]
        # AUTOINCREMENT gives the rows of a multi-row INSERT consecutive ids in VALUES order
        # (each is one more than the largest so far, and no one else writes inside our
        # transaction), so the first id follows from the last.
        last = _insert_rows(db, "messages(sender_id, conversation_id, body, sent_at_ms)", 4, rows)
        message_id = last - count
        out: list[StoredMessage] = []
        pending: list[int] = []
        history: list[int] = []
        for found, conversation_id, sender_id in stored:
            if not conversation_id:
                out.append(StoredMessage(0, 0, {}))
                continue
            message_id += 1
            ids = set(found.values())
            for recipient in ids:
                pending += (recipient, message_id)
            ids.add(sender_id)
            for owner in ids:
                history += (owner, conversation_id, message_id)
            out.append(StoredMessage(message_id, conversation_id, found))
        _insert_rows(db, "pending(recipient_id, message_id)", 2, pending)
        _insert_rows(db, "history(owner_id, conversation_id, message_id)", 3, history)
        return out

    def _add_one(
        self, db: _Db, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        """One send alone (one request in flight): the same rows, fewer steps."""
        stored = self._live_ids(db, recipients)
        if not stored or sender_id in self._deleted:
            return StoredMessage(0, 0, {})
        ids = set(stored.values())
        key = migrations.members_key(ids | {sender_id})
        conversation_id = self._conversations.get(key) or self._new_conversation(db, key)
        message_id = db.execute(
            "INSERT INTO messages(sender_id, conversation_id, body, sent_at_ms)"
            " VALUES (?, ?, ?, ?)",
            (sender_id, conversation_id, body, now_ms),
        ).lastrowid
        assert message_id is not None
        pending = [v for recipient in ids for v in (recipient, message_id)]
        db.execute(_values("pending(recipient_id, message_id)", 2, len(ids)), pending)
        ids.add(sender_id)
        history = [v for owner in ids for v in (owner, conversation_id, message_id)]
        db.execute(_values("history(owner_id, conversation_id, message_id)", 3, len(ids)), history)
        return StoredMessage(message_id, conversation_id, stored)

    def _new_conversation(self, db: _Db, key: str) -> int:
        """The conversation of these members, created if it is new (inside a write job)."""
        conversation_id = self._conversation_id(db, key)
        if not conversation_id:
            cursor = db.execute("INSERT INTO conversations(members) VALUES (?)", (key,))
            assert cursor.lastrowid is not None
            conversation_id = cursor.lastrowid
            self._remember_conversation(key, conversation_id)  # (a rollback forgets it)
        return conversation_id

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
        key = migrations.members_key(member_ids)
        return self._conversations.get(key) or self._conversation_id(self._read, key)

    async def members(self, conversation_id: int) -> list[Member]:
        return [Member(i, *self._person(i)) for i in self._member_ids(conversation_id)]

    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        db = self._read
        found = db.execute(
            "SELECT conversation_id, max(message_id) AS last FROM history WHERE owner_id = ?"
            " GROUP BY conversation_id HAVING last < ? ORDER BY last DESC LIMIT ?",
            (owner_id, before_id or _NO_BOUND, limit),
        ).fetchall()
        conversations = []
        for conversation_id, last_id in found:
            row = db.execute(
                f"SELECT {_MESSAGE_COLUMNS} FROM messages m WHERE m.id = ?", (last_id,)
            ).fetchone()
            if row is None:  # (deleted since the first query ran)
                continue
            [last] = self._deliveries(owner_id, [row])
            read_up_to = await self.read_up_to(owner_id, conversation_id)
            others = [m for m in await self.members(conversation_id) if m.id != owner_id]
            conversations.append(
                Conversation(
                    conversation_id,
                    tuple(sorted(m.username for m in others)),
                    last,
                    self._unread(owner_id, conversation_id, read_up_to),
                    read_up_to,
                    tuple(sorted(m.username for m in others if m.deleted)),
                )
            )
        return conversations

    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        rows = self._read.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = ? AND h.conversation_id = ? AND h.message_id < ?"
            " ORDER BY h.message_id DESC LIMIT ?",
            (owner_id, conversation_id, before_id or _NO_BOUND, limit),
        )
        return self._deliveries(owner_id, rows)

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
            (last,) = db.execute(
                "SELECT coalesce(max(message_id), 0) FROM history"
                " WHERE owner_id = ? AND conversation_id = ?",
                (owner_id, conversation_id),
            ).fetchone()
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
        return read_up_to, self._unread(owner_id, conversation_id, read_up_to)

    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        return await self._writer.run(
            lambda db: self._delete_messages(db, owner_id, ids, for_everyone)
        )

    def _delete_messages(
        self, db: _Db, owner_id: int, ids: list[int], for_everyone: bool
    ) -> Removed:
        """A job (at most limits.MAX_DELETE_IDS ids). NotSender is raised before any write."""
        marks = ",".join("?" * len(ids))
        found = db.execute(
            f"SELECT id, sender_id, conversation_id FROM messages WHERE id IN ({marks})", ids
        ).fetchall()
        held = {
            mid for mid, _, conversation in found if self._holds(db, owner_id, conversation, mid)
        }
        if not for_everyone:
            mine = [(owner_id, c, mid) for mid, _, c in found if mid in held]
            db.executemany(
                "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                [(owner_id, mid) for _, _, mid in mine],
            )
            self._delete_copies(db, mine)
            self._collect(db, (mid for _, _, mid in mine))
            return {owner_id: sorted(held)} if held else {}
        # Considered: what the caller holds or sent; anything else is not theirs to see.
        considered = [(m, s, c) for m, s, c in found if m in held or s == owner_id]
        foreign = [m for m, s, _ in considered if s != owner_id]
        if foreign:
            raise NotSender(foreign)
        removed: Removed = {}
        for mid, _, conversation in considered:
            copies = [
                (owner, conversation, mid)
                for owner in self._member_ids(conversation, db)
                if self._holds(db, owner, conversation, mid)
            ]
            for owner, _, _ in copies:
                removed.setdefault(owner, []).append(mid)
            self._delete_copies(db, copies)
            db.executemany(
                "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                [(owner, mid) for owner, _, _ in copies],
            )
        db.executemany("DELETE FROM messages WHERE id = ?", [(m,) for m, _, _ in considered])
        return removed

    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        return await self._writer.run_chunked(
            lambda db: self._prune_history(db, max_per_user, older_than_ms)
        )

    def _prune_history(
        self, db: _Db, max_per_user: int | None, older_than_ms: int | None
    ) -> Generator[None, None, int]:
        """A chunked job: CHUNK messages (or one user over the limit) per loop turn."""
        not_pending = (
            " AND NOT EXISTS (SELECT 1 FROM pending p"
            " WHERE p.recipient_id = h.owner_id AND p.message_id = h.message_id)"
        )
        doomed: set[_Copy] = set()
        if older_than_ms is not None:
            old = db.execute(
                "SELECT id, conversation_id FROM messages WHERE sent_at_ms < ?", (older_than_ms,)
            ).fetchall()
            for start in range(0, len(old), CHUNK):
                for mid, conversation in old[start : start + CHUNK]:
                    doomed.update(
                        (owner, conversation, mid)
                        for owner in self._member_ids(conversation, db)
                        if self._holds(db, owner, conversation, mid)
                        and not self._pending(db, owner, mid)
                    )
                yield
        if max_per_user is not None:
            over = db.execute(
                "SELECT owner_id FROM history GROUP BY owner_id HAVING count(*) > ?",
                (max_per_user,),
            ).fetchall()
            for (owner,) in over:
                (threshold,) = db.execute(
                    "SELECT message_id FROM history WHERE owner_id = ?"
                    " ORDER BY message_id DESC LIMIT 1 OFFSET ?",
                    (owner, max_per_user),
                ).fetchone()
                doomed.update(
                    db.execute(
                        "SELECT h.owner_id, h.conversation_id, h.message_id FROM history h"
                        " WHERE h.owner_id = ? AND h.message_id <= ?" + not_pending,
                        (owner, threshold),
                    )
                )
                yield
        ordered = sorted(doomed)
        for start in range(0, len(ordered), CHUNK):
            chunk = ordered[start : start + CHUNK]
            self._delete_copies(db, chunk)
            self._collect(db, {mid for _, _, mid in chunk})
            yield
        return len(doomed)

    async def close(self) -> None:
        await self._writer.aclose()
        if self._helper is not None:
            self._helper.shutdown(wait=True)
            if self._helper_db is not None:
                self._helper_db.close()
        if self._read is not self._db:
            self._read.close()
        self._db.close()

    # -- internals ---------------------------------------------------------------------------
    def _forget(self) -> None:
        """After a rollback: the caches may hold rows that were never committed."""
        self._deleted.clear()  # (the deleted ones have no session left to send from)
        self._people.clear()
        self._members.clear()
        self._conversations.clear()

    @staticmethod
    def _live_ids(db: _Db, usernames: Sequence[str]) -> dict[str, int]:
        marks = ",".join("?" * len(usernames))
        rows = db.execute(
            f"SELECT username, id FROM accounts WHERE username IN ({marks})"
            " AND deleted_at_ms IS NULL",
            tuple(usernames),
        )
        return dict(rows)

    def _conversation_id(self, db: _Db, key: str) -> int:
        row = db.execute("SELECT id FROM conversations WHERE members = ?", (key,)).fetchone()
        if row is None:
            return 0
        self._remember_conversation(key, row[0])
        return int(row[0])

    def _remember_conversation(self, key: str, conversation_id: int) -> tuple[int, ...]:
        if len(self._conversations) >= _CACHE_LIMIT:
            self._conversations.clear()
            self._members.clear()
        members = tuple(int(i) for i in key.split(","))
        self._conversations[key] = conversation_id
        self._members[conversation_id] = members
        return members

    def _member_ids(self, conversation_id: int, db: _Db | None = None) -> tuple[int, ...]:
        cached = self._members.get(conversation_id)
        if cached is not None:
            return cached
        row = (
            (db or self._read)
            .execute("SELECT members FROM conversations WHERE id = ?", (conversation_id,))
            .fetchone()
        )
        if row is None:
            return ()
        return self._remember_conversation(row[0], conversation_id)

    def _person(self, account_id: int) -> tuple[str, bool]:
        person = self._people.get(account_id)
        if person is None:
            row = self._read.execute(
                "SELECT username, deleted_at_ms IS NOT NULL FROM accounts WHERE id = ?",
                (account_id,),
            ).fetchone()
            person = (row[0], bool(row[1])) if row else ("", True)
            if len(self._people) >= _CACHE_LIMIT:
                self._people.clear()
            self._people[account_id] = person
        return person

    def _deliveries(self, viewer_id: int, rows: Iterable[_Row]) -> list[Delivery]:
        """Message rows as the viewer sees them: the other participants, a deleted sender."""
        out = []
        for message_id, sender_id, body, sent_at_ms, conversation_id in rows:
            sender, sender_deleted = self._person(sender_id)
            others = tuple(
                sorted(
                    self._person(i)[0] for i in self._member_ids(conversation_id) if i != viewer_id
                )
            )
            out.append(
                Delivery(
                    message_id, sender, body, sent_at_ms, others, sender_deleted, conversation_id
                )
            )
        return out

    def _unread(self, owner_id: int, conversation_id: int, read_up_to: int) -> int:
        row = self._read.execute(
            "SELECT count(*) FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = ? AND h.conversation_id = ? AND h.message_id > ?"
            " AND m.sender_id != ?",
            (owner_id, conversation_id, read_up_to, owner_id),
        ).fetchone()
        return int(row[0])

    @staticmethod
    def _holds(db: _Db, owner_id: int, conversation_id: int, message_id: int) -> bool:
        """Whether the owner has a copy of the message (one lookup by the full key)."""
        return (
            db.execute(
                "SELECT 1 FROM history"
                " WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
                (owner_id, conversation_id, message_id),
            ).fetchone()
            is not None
        )

    @staticmethod
    def _pending(db: _Db, recipient_id: int, message_id: int) -> bool:
        return (
            db.execute(
                "SELECT 1 FROM pending WHERE recipient_id = ? AND message_id = ?",
                (recipient_id, message_id),
            ).fetchone()
            is not None
        )

    @staticmethod
    def _delete_copies(db: _Db, copies: Iterable[_Copy]) -> None:
        """Delete history rows given as (owner, conversation, message) keys."""
        db.executemany(
            "DELETE FROM history WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
            copies,
        )

    def _collect(self, db: _Db, message_ids: Iterable[int]) -> None:
        """Delete message rows that no history copy refers to any more (a pending copy always
        has a history copy). Copies are found through the conversation's members."""
        for message_id in set(message_ids):
            row = db.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                continue
            conversation = row[0]
            if not any(
                self._holds(db, member, conversation, message_id)
                for member in self._member_ids(conversation, db)
            ):
                db.execute("DELETE FROM messages WHERE id = ?", (message_id,))


def _prefix_range(glob: str) -> tuple[str, str | None]:
    """The literal prefix of a SQLite GLOB and the least string above every string that
    starts with it (code point order = SQLite's binary order over UTF-8): an index range.
    ``('', None)`` when the pattern starts with a wildcard. ``[[]`` is a literal '['
    (core.service.glob_to_sqlite); any other '[' starts a class and ends the prefix."""
    prefix: list[str] = []
    i = 0
    while i < len(glob):
        char = glob[i]
        if char in "*?":
            break
        if char == "[":
            if glob.startswith("[[]", i):
                prefix.append("[")
                i += 3
                continue
            break
        prefix.append(char)
        i += 1
    while prefix and ord(prefix[-1]) >= 0x10FFFF:
        prefix.pop()
    if not prefix:
        return "", None
    text = "".join(prefix)
    return text, text[:-1] + chr(ord(text[-1]) + 1)


def _insert_rows(db: _Db, table: str, width: int, values: Sequence[object]) -> int:
    """Multi-row INSERTs of ``values`` (flat, ``width`` per row), _ROWS_PER_INSERT at most
    per statement (so at most that many statement texts are ever built per table).
    Returns the rowid of the last row."""
    step = width * _ROWS_PER_INSERT
    if len(values) <= step:
        return db.execute(_values(table, width, len(values) // width), values).lastrowid or 0
    last = 0
    for start in range(0, len(values), step):
        chunk = values[start : start + step]
        last = db.execute(_values(table, width, len(chunk) // width), chunk).lastrowid or 0
    return last


@functools.cache
def _values(table: str, width: int, rows: int) -> str:
    """``INSERT INTO table VALUES (?, ?), (?, ?)...`` for ``rows`` rows of ``width``
    (at most _ROWS_PER_INSERT rows of 4: far below SQLite's 32766 variables)."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {table} VALUES " + ", ".join([row] * rows)


__all__ = ["CHUNK", "LIST_BUDGET_S", "SqliteStore"]
