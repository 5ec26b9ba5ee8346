"""SqliteStore: the Store on one SQLite file in WAL mode (schema: ``core.migrations``).

The store does its work synchronously inside the async methods: each statement is tens of
microseconds in WAL mode, cheaper than a thread hop, and it keeps the service free of locks
(everything runs on the one event loop).

Send is the hot path: one transaction of one SELECT (who exists), one conversation lookup
(cached after its first use), one INSERT into messages, and one multi-row INSERT each into
pending (a row per recipient) and history (a row per participant, the sender's included).
History and pending carry no secondary index and no foreign key (see core.migrations): the
copies of one message are found through its conversation's members. Everything else is
rarer and may cost more.

Two caches keep Delivery construction free of lookups: account id -> (name, deleted), and
conversation id -> member ids (conversations never change their members).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Iterable, Sequence
from pathlib import Path

from core import migrations
from core.store import Account, DuplicateAccount, Member, NotSender, Removed, Store, StoredMessage
from core.types import Conversation, Delivery

#: Larger than any SQLite rowid: "no upper bound" for id < ? queries.
_NO_BOUND = 2**63 - 1
#: Cached conversations before the cache is emptied (each entry is a few ids).
_CACHE_LIMIT = 100_000

_MESSAGE_COLUMNS = "m.id, m.sender_id, m.body, m.sent_at_ms, m.conversation_id"
_Row = tuple[int, int, str, int, int]


class SqliteStore(Store):
    """SQLite in WAL mode. ``path=':memory:'`` for tests and protocol-only benches.

    synchronous=NORMAL in WAL mode makes every commit survive a crash of the *process*
    (kill -9): the WAL is written before the commit returns; only an OS crash or power loss
    can lose the last commits. ``synchronous='FULL'`` closes that gap at an fsync per send.
    Opening a file written by an older wirechat upgrades it in place (core.migrations).
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA foreign_keys=ON")
        migrations.upgrade(self._db)
        self._people: dict[int, tuple[str, bool]] = {}  # account id -> (name, deleted)
        self._members: dict[int, tuple[int, ...]] = {}  # conversation id -> member ids
        self._conversations: dict[str, int] = {}  # members key -> conversation id

    # -- accounts ----------------------------------------------------------------------------
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        try:
            cursor = self._db.execute(
                "INSERT INTO accounts(username, password_hash, created_at_ms) VALUES (?, ?, ?)",
                (username, password_hash, now_ms),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateAccount(username) from exc
        assert cursor.lastrowid is not None
        return cursor.lastrowid

    async def find_account(self, username: str) -> Account | None:
        row = self._db.execute(
            "SELECT id, username, password_hash FROM accounts"
            " WHERE username = ? AND deleted_at_ms IS NULL",
            (username,),
        ).fetchone()
        return Account(*row) if row else None

    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        return self._live_ids(usernames)

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT username FROM accounts WHERE deleted_at_ms IS NULL"
            " AND username GLOB ? AND username > ? ORDER BY username LIMIT ?",
            (glob, after, limit),
        )
        return [row[0] for row in rows]

    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        db = self._db
        removed: Removed = {}
        with _transaction(db):
            own = db.execute(
                "SELECT conversation_id, message_id FROM history WHERE owner_id = ?", (account_id,)
            ).fetchall()
            db.execute("DELETE FROM pending WHERE recipient_id = ?", (account_id,))
            db.execute("DELETE FROM history WHERE owner_id = ?", (account_id,))
            db.execute("DELETE FROM read_state WHERE owner_id = ?", (account_id,))
            gone = [message_id for _, message_id in own]
            if purge_sent:
                # Still pending = never acked by that recipient (Rule 15's "undelivered").
                copies = db.execute(
                    "SELECT p.recipient_id, m.conversation_id, p.message_id FROM pending p"
                    " JOIN messages m ON m.id = p.message_id WHERE m.sender_id = ?",
                    (account_id,),
                ).fetchall()
                db.executemany(
                    "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                    [(owner, message_id) for owner, _, message_id in copies],
                )
                self._delete_copies(copies)
                for owner, _, message_id in copies:
                    removed.setdefault(owner, []).append(message_id)
                gone.extend(message_id for _, _, message_id in copies)
            self._collect(gone)
            db.execute(
                "UPDATE accounts SET password_hash = '', deleted_at_ms = ? WHERE id = ?",
                (now_ms, account_id),
            )
        self._people.pop(account_id, None)
        return removed

    # -- messages ----------------------------------------------------------------------------
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        # One transaction decides who exists and stores every copy, so an account deleted or
        # created concurrently cannot leave a pending row without an account.
        db = self._db
        new_conversation: tuple[str, int] | None = None
        with _transaction(db):
            stored = self._live_ids(recipients)
            if not stored:
                return StoredMessage(0, 0, {})
            ids = set(stored.values())
            key = migrations.members_key(ids | {sender_id})
            conversation_id = self._conversations.get(key) or self._conversation_id(key)
            if not conversation_id:
                cursor = db.execute("INSERT INTO conversations(members) VALUES (?)", (key,))
                assert cursor.lastrowid is not None
                conversation_id = cursor.lastrowid
                new_conversation = (key, conversation_id)
            cursor = db.execute(
                "INSERT INTO messages(sender_id, conversation_id, body, sent_at_ms)"
                " VALUES (?, ?, ?, ?)",
                (sender_id, conversation_id, body, now_ms),
            )
            message_id = cursor.lastrowid
            assert message_id is not None
            # One multi-row INSERT per table: a statement per row costs more than the row.
            pending = [v for recipient in ids for v in (recipient, message_id)]
            db.execute(_values("pending(recipient_id, message_id)", 2, len(ids)), pending)
            owners = ids | {sender_id}
            history = [v for owner in owners for v in (owner, conversation_id, message_id)]
            db.execute(
                _values("history(owner_id, conversation_id, message_id)", 3, len(owners)),
                history,
            )
        if new_conversation is not None:  # cached only once committed
            self._remember_conversation(*new_conversation)
        return StoredMessage(message_id, conversation_id, stored)

    async def pending_count(self, recipient_id: int) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM pending WHERE recipient_id = ?", (recipient_id,)
        ).fetchone()
        return int(row[0])

    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM pending p JOIN messages m ON m.id = p.message_id"
            " WHERE p.recipient_id = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
            (recipient_id, after_id, limit),
        )
        return self._deliveries(recipient_id, rows)

    async def mark_delivered(self, recipient_id: int, message_ids: Sequence[int]) -> None:
        with _transaction(self._db):
            self._db.executemany(
                "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                [(recipient_id, mid) for mid in message_ids],
            )

    # -- history -----------------------------------------------------------------------------
    async def conversation_of(self, member_ids: set[int]) -> int:
        key = migrations.members_key(member_ids)
        return self._conversations.get(key) or self._conversation_id(key)

    async def members(self, conversation_id: int) -> list[Member]:
        return [Member(i, *self._person(i)) for i in self._member_ids(conversation_id)]

    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        db = self._db
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
        rows = self._db.execute(
            f"SELECT {_MESSAGE_COLUMNS} FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = ? AND h.conversation_id = ? AND h.message_id < ?"
            " ORDER BY h.message_id DESC LIMIT ?",
            (owner_id, conversation_id, before_id or _NO_BOUND, limit),
        )
        return self._deliveries(owner_id, rows)

    async def read_up_to(self, owner_id: int, conversation_id: int) -> int:
        row = self._db.execute(
            "SELECT up_to_id FROM read_state WHERE owner_id = ? AND conversation_id = ?",
            (owner_id, conversation_id),
        ).fetchone()
        return int(row[0]) if row else 0

    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        db = self._db
        with _transaction(db):
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
        read_up_to = await self.read_up_to(owner_id, conversation_id)
        return read_up_to, self._unread(owner_id, conversation_id, read_up_to)

    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        db = self._db
        ids = sorted(set(message_ids))
        if not ids:
            return {}
        marks = ",".join("?" * len(ids))
        with _transaction(db):
            found = db.execute(
                f"SELECT id, sender_id, conversation_id FROM messages WHERE id IN ({marks})", ids
            ).fetchall()
            held = {
                mid for mid, _, conversation in found if self._holds(owner_id, conversation, mid)
            }
            if not for_everyone:
                mine = [(owner_id, c, mid) for mid, _, c in found if mid in held]
                db.executemany(
                    "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                    [(owner_id, mid) for _, _, mid in mine],
                )
                self._delete_copies(mine)
                self._collect(mid for _, _, mid in mine)
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
                    for owner in self._member_ids(conversation)
                    if self._holds(owner, conversation, mid)
                ]
                for owner, _, _ in copies:
                    removed.setdefault(owner, []).append(mid)
                self._delete_copies(copies)
                db.executemany(
                    "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                    [(owner, mid) for owner, _, _ in copies],
                )
            db.executemany("DELETE FROM messages WHERE id = ?", [(m,) for m, _, _ in considered])
        return removed

    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        db = self._db
        not_pending = (
            " AND NOT EXISTS (SELECT 1 FROM pending p"
            " WHERE p.recipient_id = h.owner_id AND p.message_id = h.message_id)"
        )
        doomed: set[tuple[int, int, int]] = set()
        with _transaction(db):
            if older_than_ms is not None:
                old = db.execute(
                    "SELECT id, conversation_id FROM messages WHERE sent_at_ms < ?",
                    (older_than_ms,),
                ).fetchall()
                for mid, conversation in old:
                    doomed.update(
                        (owner, conversation, mid)
                        for owner in self._member_ids(conversation)
                        if self._holds(owner, conversation, mid) and not self._pending(owner, mid)
                    )
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
            self._delete_copies(sorted(doomed))
            self._collect({mid for _, _, mid in doomed})
        return len(doomed)

    async def close(self) -> None:
        self._db.close()

    # -- internals ---------------------------------------------------------------------------
    def _live_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        marks = ",".join("?" * len(usernames))
        rows = self._db.execute(
            f"SELECT username, id FROM accounts WHERE username IN ({marks})"
            " AND deleted_at_ms IS NULL",
            tuple(usernames),
        )
        return dict(rows)

    def _conversation_id(self, key: str) -> int:
        row = self._db.execute("SELECT id FROM conversations WHERE members = ?", (key,)).fetchone()
        if row is None:
            return 0
        self._remember_conversation(key, row[0])
        return int(row[0])

    def _remember_conversation(self, key: str, conversation_id: int) -> None:
        if len(self._conversations) >= _CACHE_LIMIT:
            self._conversations.clear()
            self._members.clear()
        self._conversations[key] = conversation_id
        self._members[conversation_id] = tuple(int(i) for i in key.split(","))

    def _member_ids(self, conversation_id: int) -> tuple[int, ...]:
        cached = self._members.get(conversation_id)
        if cached is not None:
            return cached
        row = self._db.execute(
            "SELECT members FROM conversations WHERE id = ?", (conversation_id,)
        ).fetchone()
        if row is None:
            return ()
        self._remember_conversation(row[0], conversation_id)
        return self._members[conversation_id]

    def _person(self, account_id: int) -> tuple[str, bool]:
        person = self._people.get(account_id)
        if person is None:
            row = self._db.execute(
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
        row = self._db.execute(
            "SELECT count(*) FROM history h JOIN messages m ON m.id = h.message_id"
            " WHERE h.owner_id = ? AND h.conversation_id = ? AND h.message_id > ?"
            " AND m.sender_id != ?",
            (owner_id, conversation_id, read_up_to, owner_id),
        ).fetchone()
        return int(row[0])

    def _holds(self, owner_id: int, conversation_id: int, message_id: int) -> bool:
        """Whether the owner has a copy of the message (one lookup by the full key)."""
        return (
            self._db.execute(
                "SELECT 1 FROM history"
                " WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
                (owner_id, conversation_id, message_id),
            ).fetchone()
            is not None
        )

    def _pending(self, recipient_id: int, message_id: int) -> bool:
        return (
            self._db.execute(
                "SELECT 1 FROM pending WHERE recipient_id = ? AND message_id = ?",
                (recipient_id, message_id),
            ).fetchone()
            is not None
        )

    def _delete_copies(self, copies: Iterable[tuple[int, int, int]]) -> None:
        """Delete history rows given as (owner, conversation, message) keys."""
        self._db.executemany(
            "DELETE FROM history WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
            copies,
        )

    def _collect(self, message_ids: Iterable[int]) -> None:
        """Delete message rows that no history copy refers to any more (a pending copy always
        has a history copy). Copies are found through the conversation's members."""
        db = self._db
        for message_id in set(message_ids):
            row = db.execute(
                "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
            ).fetchone()
            if row is None:
                continue
            conversation = row[0]
            if not any(
                self._holds(member, conversation, message_id)
                for member in self._member_ids(conversation)
            ):
                db.execute("DELETE FROM messages WHERE id = ?", (message_id,))


@functools.cache
def _values(table: str, width: int, rows: int) -> str:
    """``INSERT INTO table VALUES (?, ?), (?, ?)...`` for ``rows`` rows of ``width``
    (at most 257 rows of 3: far below SQLite's 32766 variables)."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT INTO {table} VALUES " + ", ".join([row] * rows)


class _transaction:
    """BEGIN ... COMMIT, or ROLLBACK on any exception (also on a return from inside)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self._db = db

    def __enter__(self) -> None:
        self._db.execute("BEGIN")

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is None:
            self._db.execute("COMMIT")
        elif self._db.in_transaction:
            self._db.execute("ROLLBACK")


__all__ = ["SqliteStore"]
