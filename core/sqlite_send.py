"""Staging sends: the rows of the SQLite store's hot path (Rules 8, 9, 13, 19-21).

A send is a *batch job* of the store's :class:`~core.sqlite_writer.GroupWriter`: the sends
queued together are staged together, in call order, inside the group's transaction, in a
few statements whatever their number:

  * who exists: the writer's live-name cache (``StoreCache.live_ids``; a SELECT on a miss),
    decided inside the transaction that stores every copy, so an account deleted or created
    concurrently cannot leave a pending row without an account;
  * the conversation of the sender and the recipients found (cached; created if new),
    worked out once per (sender, recipients) in the group: under load a group holds a few
    senders' pipelines, each repeating the same recipients;
  * one multi-row INSERT each into messages and pending (a row per recipient). History needs
    no row of its own (schema v4, core.migrations): a message's index entry by conversation
    is every member's copy. A statement per row would cost more than the row: SQLite's
    per-statement work dwarfs a 4-column row's.

``INSERT OR ROLLBACK`` (issue 10). Inside the group's transaction a multi-row INSERT that
may fail half-way keeps a statement journal (every page it touches is copied first, to undo
that statement alone); callgrind of the bench's shape, ``bench/micro_sqlite_probe.py``:
~2,400 instructions per send. Nothing here fails but a bug (the rows are fresh ids), and a
failure rolls the whole group back anyway (core.sqlite_writer), so OR ROLLBACK says just
that: SQLite then keeps no statement journal, and the writer finds the transaction gone.

Ids. ``messages.id`` is AUTOINCREMENT, so the rows of one multi-row INSERT get consecutive
ids in VALUES order (each is one more than the largest so far, and no one else writes inside
our transaction): the first id follows from the last. Ids increase in call order, so one
sender's messages to one recipient keep their order (Rule 13).
"""

from __future__ import annotations

import functools
import sqlite3
from collections.abc import Sequence

from core import migrations
from core.sqlite_cache import StoreCache

#: Rows per multi-row INSERT at most (and so distinct statement texts per table). Each text is
#: prepared once, when the store opens (``prime``): at 64, 128 statements in ~5 ms and ~0.9 MiB
#: (at 128: ~17 ms, ~5 MiB). A bigger group takes two statements per table, amortized over
#: its 64 and more sends.
ROWS_PER_INSERT = 64

#: add_message's arguments: (sender id, body, now in ms, recipient names).
Send = tuple[int, str, int, Sequence[str]]

#: A send's copies: (found names -> ids, conversation id, recipient ids).
_Copies = tuple[dict[str, int], int, tuple[int, ...]]
#: What a send stored: (message id, conversation id, the names stored for -> their ids), as
#: ``add_message_now`` gives it (core.service): a tuple, not a StoredMessage (~2,500
#: instructions less per send: no builder call, no empty ``seqs`` dict; SQLite keeps none).
Stored = tuple[int, int, dict[str, int]]
#: Nothing stored (no recipient exists, or the sender is being deleted).
_NOTHING: Stored = (0, 0, {})
#: (__call__'s "no send before this one")
_NO_NAMES: Sequence[str] = ()
_NO_COPIES: _Copies = ({}, 0, ())

_MESSAGES = "messages(sender_id, conversation_id, body, sent_at_ms)"
_PENDING = "pending(recipient_id, message_id)"


class SendStager:
    """The batch job of sends (one instance per store: the writer groups the sends whose
    batch is the same object)."""

    def __init__(self, cache: StoreCache) -> None:
        self._cache = cache

    def __call__(self, db: sqlite3.Connection, sends: list[Send]) -> list[Stored]:
        """Stage ``sends``; what each stored, in order (``Stored``; message id 0: nothing was
        stored, no recipient exists or the sender is being deleted)."""
        if len(sends) == 1:
            return [self.one(db, *sends[0])]
        cache = self._cache
        deleted = cache.deleted
        # A group's sends mostly repeat a few (sender, recipients), in runs (a connection's
        # pipeline is read in one piece): who they reach, their conversation and the owners
        # of their copies are worked out once per pair (the found-names dict is shared by
        # those sends' results; nobody changes it), and a send like the one before it takes
        # that one's (no key built, hashed or looked up: ~800 instructions a send, callgrind).
        known: dict[object, _Copies] = {}
        stored: list[_Copies] = []  # per send, in call order
        rows: list[object] = []  # the message rows, flat, in call order
        last_sender, last_recipients, copies = 0, _NO_NAMES, _NO_COPIES
        for sender_id, body, now_ms, recipients in sends:
            if sender_id != last_sender or recipients != last_recipients:
                last_sender, last_recipients = sender_id, recipients
                key = (sender_id, recipients[0] if len(recipients) == 1 else tuple(recipients))
                copies = known.get(key) or self._copies(db, deleted, sender_id, recipients)
                known[key] = copies
            stored.append(copies)
            if copies[1]:  # (list.append is specialized: cheaper than += of a new tuple)
                rows.append(sender_id)
                rows.append(copies[1])
                rows.append(body)
                rows.append(now_ms)
        count = len(rows) // 4
        if not count:
            return [_NOTHING] * len(sends)
        message_id = insert_rows(db, _MESSAGES, 4, rows) - count
        out: list[Stored] = []
        pending: list[int] = []
        for found, conversation_id, recipient_ids in stored:
            if not conversation_id:
                out.append(_NOTHING)
                continue
            message_id += 1
            if len(recipient_ids) == 1:  # (most sends: no loop)
                pending.append(recipient_ids[0])
                pending.append(message_id)
            else:
                for recipient in recipient_ids:
                    pending.append(recipient)
                    pending.append(message_id)
            out.append((message_id, conversation_id, found))
        insert_rows(db, _PENDING, 2, pending)
        return out

    def _copies(
        self, db: sqlite3.Connection, deleted: set[int], sender_id: int, recipients: Sequence[str]
    ) -> _Copies:
        """Who a send reaches and where its copies go (conversation 0: nothing is stored)."""
        found = self._cache.live_ids(db, recipients)
        if not found or sender_id in deleted:
            return found, 0, ()
        return found, self._conversation(db, sender_id, found), tuple(found.values())

    def one(
        self,
        db: sqlite3.Connection,
        sender_id: int,
        body: str,
        now_ms: int,
        recipients: Sequence[str],
    ) -> Stored:
        """One send alone (one request in flight): the same rows, fewer steps."""
        cache = self._cache
        stored = cache.live_ids(db, recipients)
        if not stored or sender_id in cache.deleted:
            return _NOTHING
        conversation_id = self._conversation(db, sender_id, stored)
        message_id = db.execute(
            "INSERT OR ROLLBACK INTO messages(sender_id, conversation_id, body, sent_at_ms)"
            " VALUES (?, ?, ?, ?)",
            (sender_id, conversation_id, body, now_ms),
        ).lastrowid
        assert message_id is not None
        ids = set(stored.values())
        pending = [v for recipient in ids for v in (recipient, message_id)]
        db.execute(values(_PENDING, 2, len(ids)), pending)
        return message_id, conversation_id, stored

    def _conversation(self, db: sqlite3.Connection, sender_id: int, found: dict[str, int]) -> int:
        """The conversation of the sender and these recipients, created if it is new."""
        cache = self._cache
        pair = None
        if len(found) == 1:  # (the common case: no key to build once it is cached)
            [recipient] = found.values()
            pair = (sender_id, recipient)
            conversation_id = cache.pairs.get(pair)
            if conversation_id is not None:
                return conversation_id
        key = migrations.members_key({sender_id, *found.values()})
        conversation_id = cache.conversations.get(key) or cache.conversation_id(db, key)
        if not conversation_id:
            cursor = db.execute("INSERT INTO conversations(members) VALUES (?)", (key,))
            assert cursor.lastrowid is not None
            conversation_id = cursor.lastrowid
            db.executemany(
                "INSERT INTO memberships(account_id, conversation_id) VALUES (?, ?)",
                [(member, conversation_id) for member in {sender_id, *found.values()}],
            )
            cache.remember_conversation(key, conversation_id)  # (a rollback forgets it)
        if pair is not None:
            cache.pairs[pair] = conversation_id  # (emptied with the conversations)
        return conversation_id


def insert_rows(db: sqlite3.Connection, table: str, width: int, flat: Sequence[object]) -> int:
    """Multi-row INSERTs of ``flat`` (``width`` values per row), ROWS_PER_INSERT rows at
    most per statement (so at most that many statement texts are ever built per table).
    Returns the rowid of the last row (0 if there were none)."""
    step = width * ROWS_PER_INSERT
    if len(flat) <= step:
        if not flat:
            return 0
        return db.execute(values(table, width, len(flat) // width), flat).lastrowid or 0
    last = 0
    for start in range(0, len(flat), step):
        chunk = flat[start : start + step]
        last = db.execute(values(table, width, len(chunk) // width), chunk).lastrowid or 0
    return last


def prime(db: sqlite3.Connection) -> None:
    """Prepare every multi-row INSERT text into ``db``'s statement cache, once (the store
    opens its writer with room for them): a text first seen under load cost ~300,000
    instructions to prepare, ~2,000 per send over a 10 s window (callgrind, issue 10).
    Executed with no values, each is prepared and cached, then refused before it runs."""
    for table, width in ((_MESSAGES, 4), (_PENDING, 2)):
        for rows in range(1, ROWS_PER_INSERT + 1):
            try:
                db.execute(values(table, width, rows), ())
            except sqlite3.ProgrammingError:  # (the number of bindings: nothing ran)
                pass


@functools.cache
def values(table: str, width: int, rows: int) -> str:
    """``INSERT OR ROLLBACK INTO table VALUES (?, ?), (?, ?)...`` for ``rows`` rows of
    ``width`` (at most ROWS_PER_INSERT rows of 4: far below SQLite's 32766 variables). OR
    ROLLBACK: no statement journal (the module docstring)."""
    row = "(" + ", ".join("?" * width) + ")"
    return f"INSERT OR ROLLBACK INTO {table} VALUES " + ", ".join([row] * rows)


__all__ = ["ROWS_PER_INSERT", "Send", "SendStager", "Stored", "insert_rows", "prime", "values"]
