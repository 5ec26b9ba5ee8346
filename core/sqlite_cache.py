"""What the SQLite store keeps in memory so the hot paths run few statements.

Four caches, each filled from the database on a miss and bounded by :data:`CACHE_LIMIT`
(past it the cache is emptied and refills):

  * live account name -> id: who exists, for a send (Rule 8). Only the writer fills it,
    from the writer connection inside the group being staged, and a staged deletion removes
    its name before anything else is staged; every write goes through that one writer, so
    the cache says exactly what a SELECT on the writer connection would say at that point.
    Unknown names are not cached (a signup may make them live at any time).
  * account id -> (name, deleted): Delivery construction (ids never change their name).
  * conversation id -> member ids, members key -> conversation id, and (sender, recipient)
    -> conversation id for the common one-recipient send (conversations never change their
    members, and are never deleted).

A rolled-back group may have put a staged row into any of them: :meth:`StoreCache.forget`
empties them all (the store calls it from the writer's ``on_rollback``).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence

#: Entries per cache before it is emptied (each entry is a few ids or a name).
CACHE_LIMIT = 100_000


class StoreCache:
    """The caches of one SqliteStore (see the module docstring)."""

    def __init__(self, read: sqlite3.Connection) -> None:
        self._read = read  # for misses outside a write job
        self.live: dict[str, int] = {}  # live account name -> id (filled by the writer only)
        self.people: dict[int, tuple[str, bool]] = {}  # account id -> (name, deleted)
        self.members: dict[int, tuple[int, ...]] = {}  # conversation id -> member ids
        self.conversations: dict[str, int] = {}  # members key -> conversation id
        self.pairs: dict[tuple[int, int], int] = {}  # (sender, one recipient) -> conversation
        # Accounts whose deletion has been staged. A deletion takes several loop turns and
        # the service ends the user's other sessions only after it; a send they make
        # meanwhile must not store a message from an account that is going (Rule 15).
        self.deleted: set[int] = set()

    def forget(self) -> None:
        """After a rollback: the caches may hold rows that were never committed."""
        self.deleted.clear()  # (the deleted ones have no session left to send from)
        self.live.clear()
        self.people.clear()
        self.members.clear()
        self.conversations.clear()
        self.pairs.clear()

    # -- who exists (writer connection, inside a job) ----------------------------------------
    def live_ids(self, db: sqlite3.Connection, usernames: Sequence[str]) -> dict[str, int]:
        """Ids of the live accounts among ``usernames``, as the writer connection sees them
        now (``db`` must be the writer connection, inside a job)."""
        live = self.live
        found: dict[str, int] = {}
        missing: list[str] = []
        for name in usernames:
            account_id = live.get(name)
            if account_id is None:
                missing.append(name)
            else:
                found[name] = account_id
        if missing:
            fetched = select_live_ids(db, missing)
            if len(live) + len(fetched) > CACHE_LIMIT:
                live.clear()
            live.update(fetched)
            found.update(fetched)
        return found

    def going(self, db: sqlite3.Connection, account_id: int) -> None:
        """A deletion of ``account_id`` is being staged: it is no longer anyone's recipient."""
        self.deleted.add(account_id)
        row = db.execute("SELECT username FROM accounts WHERE id = ?", (account_id,)).fetchone()
        if row is not None and self.live.get(row[0]) == account_id:
            del self.live[row[0]]

    # -- people and conversations ------------------------------------------------------------
    def person(self, account_id: int) -> tuple[str, bool]:
        """(name, deleted) of an account; ("", True) for an id that never existed."""
        person = self.people.get(account_id)
        if person is None:
            row = self._read.execute(
                "SELECT username, deleted_at_ms IS NOT NULL FROM accounts WHERE id = ?",
                (account_id,),
            ).fetchone()
            person = (row[0], bool(row[1])) if row else ("", True)
            if len(self.people) >= CACHE_LIMIT:
                self.people.clear()
            self.people[account_id] = person
        return person

    def conversation_id(self, db: sqlite3.Connection, key: str) -> int:
        """The id of the conversation of these members (``key``), 0 if there is none."""
        cached = self.conversations.get(key)
        if cached is not None:
            return cached
        row = db.execute("SELECT id FROM conversations WHERE members = ?", (key,)).fetchone()
        if row is None:
            return 0
        self.remember_conversation(key, row[0])
        return int(row[0])

    def remember_conversation(self, key: str, conversation_id: int) -> tuple[int, ...]:
        """Cache a conversation; its member ids."""
        if len(self.conversations) >= CACHE_LIMIT:
            self.conversations.clear()
            self.members.clear()
            self.pairs.clear()
        members = tuple(int(i) for i in key.split(","))
        self.conversations[key] = conversation_id
        self.members[conversation_id] = members
        return members

    def member_ids(
        self, conversation_id: int, db: sqlite3.Connection | None = None
    ) -> tuple[int, ...]:
        """The member ids of a conversation (``()`` if there is no such conversation)."""
        cached = self.members.get(conversation_id)
        if cached is not None:
            return cached
        row = (
            (db or self._read)
            .execute("SELECT members FROM conversations WHERE id = ?", (conversation_id,))
            .fetchone()
        )
        if row is None:
            return ()
        return self.remember_conversation(row[0], conversation_id)


def select_live_ids(db: sqlite3.Connection, usernames: Sequence[str]) -> dict[str, int]:
    """Ids of the live accounts among ``usernames`` (one indexed SELECT)."""
    marks = ",".join("?" * len(usernames))
    rows = db.execute(
        f"SELECT username, id FROM accounts WHERE username IN ({marks}) AND deleted_at_ms IS NULL",
        tuple(usernames),
    )
    return dict(rows)


__all__ = ["CACHE_LIMIT", "StoreCache", "select_live_ids"]
