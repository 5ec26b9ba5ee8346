"""Persistence of accounts and pending messages.

The interface is small and async so that a networked store (PostgreSQL) could replace SQLite
without touching the service. The SQLite store does its work synchronously inside the async
methods: each statement is tens of microseconds in WAL mode, cheaper than a thread hop, and it
keeps the service free of locks (everything runs on the one event loop).

Schema
  accounts(username PK, password_hash, created_at_ms)
  messages(id PK AUTOINCREMENT, sender, body, sent_at_ms)   -- AUTOINCREMENT: ids never reused
  pending(recipient, message_id) PK(recipient, message_id)   -- one row per undelivered copy
A message row lives while at least one pending row points at it.
"""

from __future__ import annotations

import abc
import sqlite3
from collections.abc import Sequence
from pathlib import Path

from core.types import Delivery

_SCHEMA = """
CREATE TABLE IF NOT EXISTS accounts (
    username      TEXT PRIMARY KEY,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS messages (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    sender     TEXT NOT NULL,
    body       TEXT NOT NULL,
    sent_at_ms INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS pending (
    recipient  TEXT NOT NULL,
    message_id INTEGER NOT NULL REFERENCES messages(id),
    PRIMARY KEY (recipient, message_id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS pending_by_message ON pending(message_id);
"""


class DuplicateAccount(Exception):
    """Raised by create_account when the username exists (the service maps it)."""


class Store(abc.ABC):
    """What ChatService needs from persistence. Every write is durable when it returns."""

    @abc.abstractmethod
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> None:
        """Raises DuplicateAccount if the name is taken."""

    @abc.abstractmethod
    async def password_hash(self, username: str) -> str | None: ...

    @abc.abstractmethod
    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        """Names matching the SQLite GLOB, sorted (binary), strictly after ``after``."""

    @abc.abstractmethod
    async def add_message(
        self, sender: str, body: str, now_ms: int, recipients: Sequence[str]
    ) -> tuple[int, set[str]]:
        """Store one message pending for each recipient that has an account, atomically.

        Returns (message id, the recipients it was stored for). Ids increase. If no recipient
        exists nothing is stored and the id is 0 (Rule 8: unknown names are ignored).
        """

    @abc.abstractmethod
    async def pending_count(self, recipient: str) -> int: ...

    @abc.abstractmethod
    async def pending_after(self, recipient: str, after_id: int, limit: int) -> list[Delivery]:
        """Pending messages of ``recipient`` with id > after_id, oldest first."""

    @abc.abstractmethod
    async def mark_delivered(self, recipient: str, message_ids: Sequence[int]) -> None:
        """Remove these pending copies (ids not pending for recipient are ignored)."""

    @abc.abstractmethod
    async def delete_account(self, username: str, purge_sent: bool) -> None:
        """Delete the account and everything pending to it; with purge_sent, also its
        undelivered messages to others. One transaction."""

    @abc.abstractmethod
    async def close(self) -> None: ...


class SqliteStore(Store):
    """SQLite in WAL mode. ``path=':memory:'`` for tests and protocol-only benches.

    synchronous=NORMAL in WAL mode makes every commit survive a crash of the *process*
    (kill -9): the WAL is written before the commit returns; only an OS crash or power loss
    can lose the last commits. ``synchronous='FULL'`` closes that gap at an fsync per send.
    """

    def __init__(self, path: str | Path = ":memory:", *, synchronous: str = "NORMAL") -> None:
        if synchronous.upper() not in {"OFF", "NORMAL", "FULL", "EXTRA"}:
            raise ValueError(f"unknown synchronous mode {synchronous!r}")
        self.path = str(path)
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(f"PRAGMA synchronous={synchronous.upper()}")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._db.executescript(_SCHEMA)

    async def create_account(self, username: str, password_hash: str, now_ms: int) -> None:
        try:
            self._db.execute(
                "INSERT INTO accounts(username, password_hash, created_at_ms) VALUES (?, ?, ?)",
                (username, password_hash, now_ms),
            )
        except sqlite3.IntegrityError as exc:
            raise DuplicateAccount(username) from exc

    async def password_hash(self, username: str) -> str | None:
        row = self._db.execute(
            "SELECT password_hash FROM accounts WHERE username = ?", (username,)
        ).fetchone()
        return row[0] if row else None

    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        rows = self._db.execute(
            "SELECT username FROM accounts WHERE username GLOB ? AND username > ?"
            " ORDER BY username LIMIT ?",
            (glob, after, limit),
        )
        return [row[0] for row in rows]

    async def add_message(
        self, sender: str, body: str, now_ms: int, recipients: Sequence[str]
    ) -> tuple[int, set[str]]:
        # One transaction decides who exists and stores the pending copies, so an account
        # deleted or created concurrently cannot leave a pending row without an account.
        db = self._db
        marks = ",".join("?" * len(recipients))
        db.execute("BEGIN")
        try:
            stored = {
                row[0]
                for row in db.execute(
                    f"SELECT username FROM accounts WHERE username IN ({marks})",
                    tuple(recipients),
                )
            }
            if not stored:
                db.execute("ROLLBACK")
                return 0, stored
            cursor = db.execute(
                "INSERT INTO messages(sender, body, sent_at_ms) VALUES (?, ?, ?)",
                (sender, body, now_ms),
            )
            message_id = cursor.lastrowid
            assert message_id is not None
            db.executemany(
                "INSERT INTO pending(recipient, message_id) VALUES (?, ?)",
                [(name, message_id) for name in stored],
            )
            db.execute("COMMIT")
        except BaseException:
            if db.in_transaction:
                db.execute("ROLLBACK")
            raise
        return message_id, stored

    async def pending_count(self, recipient: str) -> int:
        row = self._db.execute(
            "SELECT count(*) FROM pending WHERE recipient = ?", (recipient,)
        ).fetchone()
        return int(row[0])

    async def pending_after(self, recipient: str, after_id: int, limit: int) -> list[Delivery]:
        rows = self._db.execute(
            "SELECT m.id, m.sender, m.body, m.sent_at_ms FROM pending p"
            " JOIN messages m ON m.id = p.message_id"
            " WHERE p.recipient = ? AND p.message_id > ? ORDER BY p.message_id LIMIT ?",
            (recipient, after_id, limit),
        )
        return [Delivery(*row) for row in rows]

    async def mark_delivered(self, recipient: str, message_ids: Sequence[int]) -> None:
        db = self._db
        pairs = [(recipient, mid) for mid in message_ids]
        db.execute("BEGIN")
        try:
            db.executemany("DELETE FROM pending WHERE recipient = ? AND message_id = ?", pairs)
            self._collect_messages(message_ids)
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    async def delete_account(self, username: str, purge_sent: bool) -> None:
        db = self._db
        db.execute("BEGIN")
        try:
            gone = [
                row[0]
                for row in db.execute(
                    "SELECT message_id FROM pending WHERE recipient = ?", (username,)
                )
            ]
            db.execute("DELETE FROM pending WHERE recipient = ?", (username,))
            if purge_sent:
                sent = [
                    row[0]
                    for row in db.execute("SELECT id FROM messages WHERE sender = ?", (username,))
                ]
                db.execute(
                    "DELETE FROM pending WHERE message_id IN"
                    " (SELECT id FROM messages WHERE sender = ?)",
                    (username,),
                )
                gone.extend(sent)
            self._collect_messages(gone)
            db.execute("DELETE FROM accounts WHERE username = ?", (username,))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def _collect_messages(self, message_ids: Sequence[int]) -> None:
        """Delete message rows that no pending copy refers to any more."""
        self._db.executemany(
            "DELETE FROM messages WHERE id = ?"
            " AND NOT EXISTS (SELECT 1 FROM pending WHERE message_id = ?)",
            [(mid, mid) for mid in message_ids],
        )

    async def close(self) -> None:
        self._db.close()


def open_store(db: str | Path, *, synchronous: str = "NORMAL") -> Store:
    """``:memory:`` -> the dict-based MemoryStore (nothing persists: protocol-only benches);
    anything else -> a SqliteStore file."""
    if str(db) == ":memory:":
        from core.memory_store import MemoryStore

        return MemoryStore()
    return SqliteStore(db, synchronous=synchronous)


__all__ = ["DuplicateAccount", "SqliteStore", "Store", "open_store"]
