"""The deleting jobs of the SQLite store: an account, messages, retention (Rules 15, 23, 25).

Each is a job for the store's :class:`~core.sqlite_writer.GroupWriter`: it runs on the
writer connection inside a group's transaction. The large ones (an account, retention) are
generators that stage CHUNK rows per loop turn, so no turn does much more than a
millisecond of store work (issue 14); the writer keeps their transaction open across turns
and readers see the state before it until it commits.

History and pending have no secondary index (core.migrations): the copies of a message are
found through its conversation's members, by the full key, and a message row goes when no
history copy refers to it any more (:func:`collect`).
"""

from __future__ import annotations

import sqlite3
from collections.abc import Generator, Iterable

from core.sqlite_cache import StoreCache
from core.store import NotSender, Removed

#: Rows a chunked delete handles per loop turn (a row is a few statements: ~1-2 ms a turn here).
CHUNK = 50
#: Message ids a purge looks through per loop turn, whoever sent them.
_ID_WINDOW = 4_096

_Db = sqlite3.Connection
_Copy = tuple[int, int, int]  # (owner, conversation, message)


def delete_account(
    db: _Db, cache: StoreCache, account_id: int, purge_sent: bool, now_ms: int
) -> Generator[None, None, Removed]:
    """A chunked job: the account's history, read marks and pending copies (with
    ``purge_sent``, its still-pending copies to others too), then its tombstone."""
    cache.going(db, account_id)
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
            "DELETE FROM history WHERE owner_id = ? AND (conversation_id, message_id) <= (?, ?)",
            (account_id, *own[-1]),
        )
        collect(db, cache, (message_id for _, message_id in own))
        yield
    while db.execute(
        "DELETE FROM pending WHERE recipient_id = ? AND message_id IN"
        " (SELECT message_id FROM pending WHERE recipient_id = ? LIMIT ?)",
        (account_id, account_id, CHUNK),
    ).rowcount:
        yield
    db.execute("DELETE FROM read_state WHERE owner_id = ?", (account_id,))
    if purge_sent:
        yield from _purge_sent(db, cache, account_id, removed)
    db.execute("DELETE FROM resume_tokens WHERE account_id = ?", (account_id,))
    db.execute(
        "UPDATE accounts SET password_hash = '', deleted_at_ms = ? WHERE id = ?",
        (now_ms, account_id),
    )
    cache.people.pop(account_id, None)
    return removed


def _purge_sent(
    db: _Db, cache: StoreCache, account_id: int, removed: Removed
) -> Generator[None, None, None]:
    """Its copies to others still pending (never acked by that recipient: Rule 15's
    "undelivered"). The sender's messages are found by walking message ids, a window per turn."""
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
            for owner in cache.member_ids(conversation, db)
            if owner != account_id and is_pending(db, owner, message_id)
        ]
        if copies:
            db.executemany(
                "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
                [(owner, message_id) for owner, _, message_id in copies],
            )
            delete_copies(db, copies)
            for owner, _, message_id in copies:
                removed.setdefault(owner, []).append(message_id)
            collect(db, cache, (message_id for _, _, message_id in copies))
        yield


def delete_messages(
    db: _Db, cache: StoreCache, owner_id: int, ids: list[int], for_everyone: bool
) -> Removed:
    """A job (at most limits.MAX_DELETE_IDS ids). NotSender is raised before any write."""
    marks = ",".join("?" * len(ids))
    found = db.execute(
        f"SELECT id, sender_id, conversation_id FROM messages WHERE id IN ({marks})", ids
    ).fetchall()
    held = {mid for mid, _, conversation in found if holds(db, owner_id, conversation, mid)}
    if not for_everyone:
        mine = [(owner_id, c, mid) for mid, _, c in found if mid in held]
        db.executemany(
            "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
            [(owner_id, mid) for _, _, mid in mine],
        )
        delete_copies(db, mine)
        collect(db, cache, (mid for _, _, mid in mine))
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
            for owner in cache.member_ids(conversation, db)
            if holds(db, owner, conversation, mid)
        ]
        for owner, _, _ in copies:
            removed.setdefault(owner, []).append(mid)
        delete_copies(db, copies)
        db.executemany(
            "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
            [(owner, mid) for owner, _, _ in copies],
        )
    db.executemany("DELETE FROM messages WHERE id = ?", [(m,) for m, _, _ in considered])
    return removed


def prune_history(
    db: _Db, cache: StoreCache, max_per_user: int | None, older_than_ms: int | None
) -> Generator[None, None, int]:
    """A chunked job: CHUNK messages (or one user over the limit) per loop turn. A copy
    still pending is never dropped."""
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
                    for owner in cache.member_ids(conversation, db)
                    if holds(db, owner, conversation, mid) and not is_pending(db, owner, mid)
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
        delete_copies(db, chunk)
        collect(db, cache, {mid for _, _, mid in chunk})
        yield
    return len(doomed)


def holds(db: _Db, owner_id: int, conversation_id: int, message_id: int) -> bool:
    """Whether the owner has a copy of the message (one lookup by the full key)."""
    return (
        db.execute(
            "SELECT 1 FROM history WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
            (owner_id, conversation_id, message_id),
        ).fetchone()
        is not None
    )


def is_pending(db: _Db, recipient_id: int, message_id: int) -> bool:
    """Whether the recipient has not acked the message yet."""
    return (
        db.execute(
            "SELECT 1 FROM pending WHERE recipient_id = ? AND message_id = ?",
            (recipient_id, message_id),
        ).fetchone()
        is not None
    )


def delete_copies(db: _Db, copies: Iterable[_Copy]) -> None:
    """Delete history rows given as (owner, conversation, message) keys."""
    db.executemany(
        "DELETE FROM history WHERE owner_id = ? AND conversation_id = ? AND message_id = ?",
        copies,
    )


def collect(db: _Db, cache: StoreCache, message_ids: Iterable[int]) -> None:
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
            holds(db, member, conversation, message_id)
            for member in cache.member_ids(conversation, db)
        ):
            db.execute("DELETE FROM messages WHERE id = ?", (message_id,))


__all__ = ["CHUNK", "collect", "delete_account", "delete_messages", "holds", "prune_history"]
