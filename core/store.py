"""Persistence of accounts, messages, history and read state: the Store interface.

The interface is small and async so that a networked store (PostgreSQL) could replace SQLite
without touching the service. Two implementations keep one contract (the store-contract
tests run both): :class:`~core.sqlite_store.SqliteStore` (a WAL file; the schema and its
numbered migrations are in ``core.migrations``) and :class:`~core.memory_store.MemoryStore`
(dicts, for protocol-only benches).

Identity (Rule 19). Accounts have stable integer ids and everything is keyed on them; names
are how users address each other. A deleted account is kept as a tombstone (its name, no
password) only so that what it sent and others still hold shows as "<name> (deleted
account)": a later account of the same name gets a new id and inherits nothing.

The model (Rules 20-25)
  * A message belongs to one conversation: the set of its sender and the recipients it was
    stored for (a 1:1 chat is the two-person case; notes to yourself the one-person case).
  * Each user has a history: one copy of every message they sent or were sent, until they
    delete it (for themselves, or as its sender for everyone), their account goes, or a
    retention limit drops it. A copy still pending (not acked, Rules 11-12) is part of the
    recipient's history and is never dropped by retention.
  * Read state is one mark per (user, conversation): every message up to that id is read.
    Unread = messages from others above the mark. It is independent of ack/pending.

Every write method is one transaction and durable when it returns.
"""

from __future__ import annotations

import abc
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

from core.types import CloseReason, Conversation, Delivery, MessagesDeleted, ReadMarker

if TYPE_CHECKING:
    from core.sqlite_store import SqliteStore as SqliteStore


class DuplicateAccount(Exception):
    """Raised by create_account when the username exists (the service maps it)."""


class NotSender(Exception):
    """delete_messages(for_everyone=True) named a message the caller did not send."""

    def __init__(self, message_ids: Sequence[int]) -> None:
        super().__init__(message_ids)
        self.message_ids = tuple(message_ids)


@dataclass(frozen=True, slots=True)
class Account:
    """A live account."""

    id: int
    username: str
    password_hash: str


@dataclass(frozen=True, slots=True)
class Member:
    """A participant of a conversation; ``deleted``: the account is gone (a tombstone)."""

    id: int
    username: str
    deleted: bool


@dataclass(frozen=True, slots=True)
class StoredMessage:
    """What add_message stored: ``recipients`` maps the names it was stored for to ids.
    ``message_id`` 0: no recipient exists, nothing was stored (Rule 8)."""

    message_id: int
    conversation_id: int
    recipients: dict[str, int]
    #: Recipient id -> its sequence number for this message (a store that keeps per-recipient
    #: sequences for a cluster's bus, core.bus; empty for the others).
    seqs: dict[int, int] = field(default_factory=dict)


#: Affected users -> the ids that left their history (for "these ids are gone" pushes).
Removed = dict[int, list[int]]


class Store(abc.ABC):
    """What ChatService needs from persistence. Every write is durable when it returns."""

    # -- accounts (Rules 1-7, 19) ------------------------------------------------------------
    @abc.abstractmethod
    async def create_account(self, username: str, password_hash: str, now_ms: int) -> int:
        """The new account's id. Raises DuplicateAccount if a live account has the name."""

    @abc.abstractmethod
    async def find_account(self, username: str) -> Account | None:
        """The live account of that name, if any."""

    async def password_hash(self, username: str) -> str | None:
        account = await self.find_account(username)
        return account.password_hash if account else None

    @abc.abstractmethod
    async def account_ids(self, usernames: Sequence[str]) -> dict[str, int]:
        """Ids of the live accounts among these names (unknown names are left out)."""

    @abc.abstractmethod
    async def list_accounts(self, glob: str, after: str, limit: int) -> list[str]:
        """Live names matching the SQLite GLOB, sorted (binary), strictly after ``after``."""

    @abc.abstractmethod
    async def delete_account(self, account_id: int, purge_sent: bool, now_ms: int) -> Removed:
        """Delete the account: its history, read marks and everything pending to it; with
        purge_sent, also its still-pending copies to others (from their history too). The
        name becomes free; the account stays as a tombstone. One transaction. Returns the
        other users' history copies that went."""

    # -- messages (Rules 8-13) ---------------------------------------------------------------
    @abc.abstractmethod
    async def add_message(
        self, sender_id: int, body: str, now_ms: int, recipients: Sequence[str]
    ) -> StoredMessage:
        """Store one message, atomically: pending for and in the history of each recipient
        that has a live account, and in the sender's history. Ids increase."""

    @abc.abstractmethod
    async def pending_count(self, recipient_id: int) -> int: ...

    @abc.abstractmethod
    async def pending_after(self, recipient_id: int, after_id: int, limit: int) -> list[Delivery]:
        """Pending messages of the recipient with id > after_id, oldest first."""

    @abc.abstractmethod
    async def mark_delivered(self, recipient_id: int, message_ids: Sequence[int]) -> None:
        """Remove these pending copies (ids not pending for the recipient are ignored).
        The history copies stay."""

    # -- history (Rules 20-25) ---------------------------------------------------------------
    @abc.abstractmethod
    async def conversation_of(self, member_ids: set[int]) -> int:
        """The id of the conversation of exactly these participants, 0 if none yet."""

    @abc.abstractmethod
    async def members(self, conversation_id: int) -> list[Member]:
        """The participants (empty for an unknown conversation)."""

    @abc.abstractmethod
    async def list_conversations(
        self, owner_id: int, before_id: int, limit: int
    ) -> list[Conversation]:
        """The owner's conversations whose last message (in the owner's history) has
        id < before_id (0: no bound), most recent first."""

    @abc.abstractmethod
    async def read_history(
        self, owner_id: int, conversation_id: int, before_id: int, limit: int
    ) -> list[Delivery]:
        """The owner's copies in one conversation with id < before_id (0: no bound),
        newest first."""

    @abc.abstractmethod
    async def read_up_to(self, owner_id: int, conversation_id: int) -> int: ...

    @abc.abstractmethod
    async def mark_read(
        self, owner_id: int, conversation_id: int, up_to_id: int
    ) -> tuple[int, int]:
        """Raise the owner's read mark to up_to_id (never lower it; never above the last
        message in the owner's history there). Returns (the mark, the unread count)."""

    @abc.abstractmethod
    async def delete_messages(
        self, owner_id: int, message_ids: Sequence[int], for_everyone: bool
    ) -> Removed:
        """Delete from the owner's history (and pending), or with for_everyone from every
        history and pending row (the owner must have sent each: else NotSender and nothing
        changes). Ids the owner neither holds nor sent are ignored. One transaction."""

    @abc.abstractmethod
    async def prune_history(self, max_per_user: int | None, older_than_ms: int | None) -> int:
        """Retention: drop history copies beyond the newest max_per_user of each user and
        copies of messages sent before older_than_ms, except copies still pending.
        Returns how many copies went."""

    # -- account security (issue 13) ---------------------------------------------------------
    @abc.abstractmethod
    async def set_password_hash(self, account_id: int, password_hash: str) -> None:
        """Replace a live account's password hash (a deleted account is left alone)."""

    @abc.abstractmethod
    async def add_resume_token(
        self, account_id: int, token_hash: bytes, expires_at_ms: int
    ) -> None:
        """Keep a resume token's hash for the account until ``expires_at_ms``. An account
        holds at most ``limits.MAX_RESUME_TOKENS_PER_ACCOUNT``: the ones that expire first
        make room. Tokens survive a restart (except in the MemoryStore)."""

    @abc.abstractmethod
    async def resume_account(self, token_hash: bytes, now_ms: int) -> tuple[int, str] | None:
        """(id, name) of the live account holding this token, if it is known and expires
        after ``now_ms``; else None (an expired token found is forgotten)."""

    @abc.abstractmethod
    async def revoke_resume_token(self, token_hash: bytes) -> None:
        """Forget one token (unknown ones are ignored)."""

    @abc.abstractmethod
    async def revoke_resume_tokens(self, account_id: int) -> None:
        """Forget every token of the account. delete_account does this too, in its
        transaction."""

    async def open(self) -> Store:
        """Connect now, so a store that cannot be reached fails at start-up, not on the first
        request (a networked store overrides it; a file or memory store is open already)."""
        return self

    @abc.abstractmethod
    async def close(self) -> None: ...


#: A notice a SeqStore logs in a user's sequence; "end every session" is its CloseReason.
LoggedNotice = ReadMarker | MessagesDeleted | CloseReason


@runtime_checkable
class SeqStore(Protocol):
    """What a cluster's bus (core.nats_bus) needs besides the Store: a per-user sequence
    numbering, in commit order, every delivery and notice for that user, and reads of what a
    node missed of it. The PostgreSQL store has it; one-process stores do not need it.

    A user's sequence rises by one per delivery to the user and per logged notice (a read
    mark, ids gone from the user's history, "end every session"), each taken under the
    user's row lock in the transaction that makes it true."""

    async def bus_baseline(self, account_id: int) -> tuple[int, int]:
        """(the user's last seq, the id of the newest message others sent the user), in one
        snapshot: where a node's feed of the user starts."""
        ...

    async def last_seqs(self, account_ids: Sequence[int]) -> dict[int, tuple[int, bool]]:
        """Account id -> (its last seq, whether the account is deleted)."""
        ...

    async def pending_by_seq(
        self, recipient_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, Delivery]]:
        """Pending copies with after_seq < seq <= up_to_seq, as (seq, delivery), by seq."""
        ...

    async def received_between(
        self, recipient_id: int, after_id: int, below_id: int, limit: int
    ) -> list[Delivery]:
        """Messages others sent the recipient, still in its history, with after_id < id <
        below_id (0: no bound), oldest first (acked or not)."""
        ...

    async def notices_by_seq(
        self, owner_id: int, after_seq: int, up_to_seq: int, limit: int
    ) -> list[tuple[int, LoggedNotice, str]]:
        """Logged notices with after_seq < seq <= up_to_seq, as (seq, notice, the node
        that logged it), by seq."""
        ...

    async def prune_notices(self, older_than_ms: int) -> int:
        """Forget notices logged before ``older_than_ms``; how many went."""
        ...

    def keep_notices(self, origin: str) -> None:
        """Log notices from now on, as written by node ``origin`` (the bus calls it once)."""
        ...

    def take_notice_seq(self, owner_id: int, notice: LoggedNotice) -> int:
        """The seq this notice took for the owner when it committed (0: none logged), asked
        once by the bus as the service pushes the notice."""
        ...


def open_store(db: str | Path, *, synchronous: str = "NORMAL") -> Store:
    """``:memory:`` -> the dict-based MemoryStore (nothing persists: protocol-only benches);
    ``postgresql://...`` or ``postgres://...`` -> a PostgresStore (``synchronous`` is
    SQLite's; PostgreSQL's durability is its own ``synchronous_commit``); anything else ->
    a SqliteStore file."""
    if str(db) == ":memory:":
        from core.memory_store import MemoryStore

        return MemoryStore()
    if str(db).startswith(("postgresql://", "postgres://")):
        from core.postgres_store import PostgresStore

        return PostgresStore(str(db))
    from core.sqlite_store import SqliteStore

    return SqliteStore(db, synchronous=synchronous)


def __getattr__(name: str) -> object:
    # ``from core.store import SqliteStore`` keeps working; it lives in core.sqlite_store.
    if name == "SqliteStore":
        from core.sqlite_store import SqliteStore

        return SqliteStore
    raise AttributeError(f"module 'core.store' has no attribute {name!r}")


__all__ = [
    "Account",
    "DuplicateAccount",
    "LoggedNotice",
    "Member",
    "NotSender",
    "Removed",
    "SeqStore",
    "SqliteStore",
    "Store",
    "StoredMessage",
    "open_store",
]
