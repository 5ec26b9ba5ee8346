"""The deleting jobs of the SQLite store: an account, messages, retention (Rules 15, 23, 25).

Each is a job for the store's :class:`~core.sqlite_writer.GroupWriter`: it runs on the
writer connection inside a group's transaction. The large ones (an account, retention) are
generators that stage CHUNK rows per loop turn, so no turn does much more than a
millisecond of store work (issue 14); the writer keeps their transaction open across turns
and readers see the state before it until it commits.

Copies (schema v4, core.migrations). A history copy is not a row: an owner *holds* message m
when they are a live member of m's conversation and (owner, m) is not in ``hidden``. An
account being deleted (``StoreCache.deleted``) or deleted holds nothing. Deleting a copy from
one owner's history writes its ``hidden`` row; a message row goes, with its ``hidden`` and
``pending`` rows, once no member holds it any more (:func:`collect`).
"""

from __future__ import annotations

import sqlite3
import sys
from collections.abc import Generator, Iterable

from core.sqlite_cache import StoreCache
from core.store import NotSender, Removed

#: Rows a chunked delete handles per loop turn (a row is a few statements: ~1-2 ms a turn here).
CHUNK = 50
#: Message ids a purge looks through per loop turn, whoever sent them.
_ID_WINDOW = 4_096
#: Copies past an owner's retention limit selected per loop turn (~5 us a row with the set
#: they go into: ~2.5 ms a turn here).
PRUNE_PAGE = 500
#: Copies retention by count hides per transaction (an owner looked at counts as one): a
#: send waits for the part in progress (65-100 ms here), not for the whole prune (0.6-3.4 s).
COUNT_SPAN = 4_096
#: Message ids retention by age goes through per transaction: a send waits for the part in
#: progress (~100 ms here), and its COMMIT runs on the loop (one for 100,000 old messages
#: held it ~13 ms).
AGE_SPAN = _ID_WINDOW

_Db = sqlite3.Connection
_Copy = tuple[int, int, int]  # (owner, conversation, message)
#: Message m is not hidden from the owner (the ``?``): with membership of m's conversation and a
#: live account, m is in the owner's history (schema v4, core.migrations). Shared with the
#: store's reads.
NOT_HIDDEN = "NOT EXISTS (SELECT 1 FROM hidden h WHERE h.owner_id = ? AND h.message_id = m.id)"


def delete_account(
    db: _Db, cache: StoreCache, account_id: int, purge_sent: bool, now_ms: int
) -> Generator[None, None, Removed]:
    """A chunked job: the account's history (the messages of its conversations nobody else
    holds), pending copies and read marks (with ``purge_sent``, its still-pending copies to
    others too), then its tombstone."""
    cache.going(db, account_id)  # from here on it holds nothing
    removed: Removed = {}
    conversations = [
        row[0]
        for row in db.execute(
            "SELECT conversation_id FROM memberships WHERE account_id = ?", (account_id,)
        ).fetchall()
    ]
    for conversation in conversations:
        after = 0
        while True:
            ids = [
                row[0]
                for row in db.execute(
                    "SELECT id FROM messages WHERE conversation_id = ? AND id > ?"
                    " ORDER BY id LIMIT ?",
                    (conversation, after, CHUNK),
                ).fetchall()
            ]
            if not ids:
                break
            after = ids[-1]
            collect(db, cache, ids)
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
    while db.execute(
        "DELETE FROM hidden WHERE owner_id = ? AND message_id IN"
        " (SELECT message_id FROM hidden WHERE owner_id = ? LIMIT ?)",
        (account_id, account_id, CHUNK * 20),
    ).rowcount:
        yield
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
            hide(db, copies)
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
    held = {mid for mid, _, conversation in found if holds(db, cache, owner_id, conversation, mid)}
    if not for_everyone:
        mine = [(owner_id, c, mid) for mid, _, c in found if mid in held]
        db.executemany(
            "DELETE FROM pending WHERE recipient_id = ? AND message_id = ?",
            [(owner_id, mid) for _, _, mid in mine],
        )
        hide(db, mine)
        collect(db, cache, (mid for _, _, mid in mine))
        return {owner_id: sorted(held)} if held else {}
    # Considered: what the caller holds or sent; anything else is not theirs to see.
    considered = [(m, s, c) for m, s, c in found if m in held or s == owner_id]
    foreign = [m for m, s, _ in considered if s != owner_id]
    if foreign:
        raise NotSender(foreign)
    removed: Removed = {}
    for mid, _, conversation in considered:
        for owner in cache.member_ids(conversation, db):
            if holds(db, cache, owner, conversation, mid):
                removed.setdefault(owner, []).append(mid)
        _drop(db, cache, mid, conversation)
    return removed


def prune_past_limit(
    db: _Db, cache: StoreCache, max_per_user: int, after: int = 0, upper: int = 0
) -> Generator[None, None, tuple[int, int, int]]:
    """A chunked job, one transaction's part of retention by count: owners in id order past
    ``after`` (or, with ``upper``, owner ``after`` again from message ``upper`` down), each
    one's copies past the newest ``max_per_user`` it holds, newest first, a page
    (:func:`past_limit`) read per loop turn and CHUNK of it hidden per turn, until COUNT_SPAN
    copies and owners. A copy still pending is never dropped.

    Returns (copies pruned, the ``after`` of the next part or 0 when this was the last, the
    ``upper`` to give it: 0 to start at the owner after ``after``). Parts in transactions of
    their own select what one job for every owner would: hiding one owner's copies changes
    no other owner's history, and an owner's newest copy past the limit, once found, stays
    the newest it may drop (a later send only adds newer ones)."""
    pruned = work = 0
    owner = after
    while work < COUNT_SPAN:
        if not upper:
            following = db.execute(
                "SELECT c.account_id FROM memberships c"
                " JOIN accounts a ON a.id = c.account_id AND a.deleted_at_ms IS NULL"
                " WHERE c.account_id > ? ORDER BY c.account_id LIMIT 1",
                (owner,),
            ).fetchone()
            if following is None:
                return pruned, 0, 0
            owner, work = following[0], work + 1
            if owner in cache.deleted:
                continue
            upper = yield from past_newest(db, owner, max_per_user)
            yield
            continue
        if not is_live(db, cache, owner):  # deleted between two parts
            upper = 0
            continue
        for page in past_limit(db, owner, upper):
            yield  # (the page's read)
            while page:
                size = min(CHUNK, COUNT_SPAN - work)
                piece, page = page[:size], page[size:]
                hide(db, piece)
                collect(db, cache, {mid for _, _, mid in piece})
                pruned, work, upper = pruned + len(piece), work + len(piece), piece[-1][2] - 1
                yield
                if work >= COUNT_SPAN:
                    return pruned, owner, upper
        upper = 0
    return pruned, owner, upper


def past_newest(db: _Db, owner_id: int, keep: int) -> Generator[None, None, int]:
    """The newest message the owner holds past their newest ``keep`` (0: none), found
    PRUNE_PAGE copies per loop turn (one OFFSET of 50,000 held the loop ~46 ms)."""
    upper, skip = sys.maxsize, keep
    while True:
        step = min(skip, PRUNE_PAGE)
        row = db.execute(
            "SELECT m.id FROM memberships c"
            " JOIN messages m ON m.conversation_id = c.conversation_id"
            f" WHERE c.account_id = ? AND {NOT_HIDDEN} AND m.id < ?"
            " ORDER BY m.id DESC LIMIT 1 OFFSET ?",
            (owner_id, owner_id, upper, step if step == skip else step - 1),
        ).fetchone()
        if row is None or step == skip:
            return int(row[0]) if row else 0
        upper, skip = row[0], skip - step
        yield


def prune_old(
    db: _Db, cache: StoreCache, older_than_ms: int, after: int = 0, last: int = 0
) -> Generator[None, None, tuple[int, int, int]]:
    """A chunked job, one transaction's part of retention by age: the copies of the messages
    sent before ``older_than_ms`` among message ids ``after`` + 1 .. ``after`` + AGE_SPAN,
    a page (:func:`past_age`) hidden per loop turn. A copy still pending is never dropped.
    ``last``: the newest message id when the first part began (0: this is the first part).

    Returns (copies pruned, the ``after`` of the next part or 0 when this was the last, the
    ``last`` to give it). Parts in transactions of their own select what one job for every
    old message would: what the age rule chooses for a message does not depend on what it
    hid of others."""
    if not last:
        (last,) = db.execute("SELECT coalesce(max(id), 0) FROM messages").fetchone()
    upto = min(after + AGE_SPAN, last)
    pruned = 0
    for page in past_age(db, cache, older_than_ms, after, upto):
        if page:
            hide(db, page)
            collect(db, cache, {mid for _, _, mid in page})
            pruned += len(page)
        yield
    return pruned, upto if upto < last else 0, last


def past_age(
    db: _Db, cache: StoreCache, older_than_ms: int, low: int, high: int
) -> Generator[list[_Copy], None, None]:
    """The copies of the messages sent before ``older_than_ms`` with ids ``low`` + 1 ..
    ``high`` that their owners hold, none still pending for them, oldest message first, a
    page per step: the old messages of at most _ID_WINDOW ids, whole messages until CHUNK
    copies have been looked at (one statement for every old message held the loop ~40 ms
    for 100,000 of them). The job may hide a page before it asks for the next."""
    while low < high:
        top = min(low + _ID_WINDOW, high)
        old = db.execute(
            "SELECT id, conversation_id FROM messages"
            " WHERE id > ? AND id <= ? AND sent_at_ms < ? ORDER BY id LIMIT ?",
            (low, top, older_than_ms, CHUNK),
        ).fetchall()
        page: list[_Copy] = []
        looked = 0
        for mid, conversation in old:
            members = cache.member_ids(conversation, db)
            page += [
                (owner, conversation, mid)
                for owner in members
                if holds(db, cache, owner, conversation, mid) and not is_pending(db, owner, mid)
            ]
            looked += len(members)
            if looked >= CHUNK:  # the rest of this window in the next page
                low = mid
                break
        else:
            low = old[-1][0] if len(old) == CHUNK else top
        yield page


def past_limit(db: _Db, owner_id: int, threshold: int) -> Generator[list[_Copy], None, None]:
    """The copies the owner holds from message ``threshold`` down, none still pending for
    them, newest first, a page of at most PRUNE_PAGE at a time (a page per loop turn: one
    statement for them all held the loop ~80 ms for an owner with 100,000 messages)."""
    upper = threshold
    while upper:
        page: list[_Copy] = db.execute(
            "SELECT c.account_id, m.conversation_id, m.id FROM memberships c"
            " JOIN messages m ON m.conversation_id = c.conversation_id"
            f" WHERE c.account_id = ? AND {NOT_HIDDEN} AND m.id <= ?"
            " AND NOT EXISTS (SELECT 1 FROM pending p"
            " WHERE p.recipient_id = c.account_id AND p.message_id = m.id)"
            " ORDER BY m.id DESC LIMIT ?",
            (owner_id, owner_id, upper, PRUNE_PAGE),
        ).fetchall()
        if page:
            yield page
        upper = page[-1][2] - 1 if len(page) == PRUNE_PAGE else 0


def is_live(db: _Db, cache: StoreCache, account_id: int) -> bool:
    """Whether the account exists and no deletion of it is staged (writer connection)."""
    if account_id in cache.deleted:
        return False
    return (
        db.execute(
            "SELECT 1 FROM accounts WHERE id = ? AND deleted_at_ms IS NULL", (account_id,)
        ).fetchone()
        is not None
    )


def holds(db: _Db, cache: StoreCache, owner_id: int, conversation_id: int, message_id: int) -> bool:
    """Whether the owner has a copy of the message (of that conversation)."""
    return (
        owner_id in cache.member_ids(conversation_id, db)
        and is_live(db, cache, owner_id)
        and db.execute(
            "SELECT 1 FROM hidden WHERE owner_id = ? AND message_id = ?", (owner_id, message_id)
        ).fetchone()
        is None
    )


def last_held(db: _Db, cache: StoreCache, owner_id: int, conversation_id: int) -> int:
    """The newest message of the conversation the owner holds (0: none)."""
    if owner_id not in cache.member_ids(conversation_id, db) or not is_live(db, cache, owner_id):
        return 0
    row = db.execute(
        f"SELECT m.id FROM messages m WHERE m.conversation_id = ? AND {NOT_HIDDEN}"
        " ORDER BY m.id DESC LIMIT 1",
        (conversation_id, owner_id),
    ).fetchone()
    return int(row[0]) if row else 0


def is_pending(db: _Db, recipient_id: int, message_id: int) -> bool:
    """Whether the recipient has not acked the message yet."""
    return (
        db.execute(
            "SELECT 1 FROM pending WHERE recipient_id = ? AND message_id = ?",
            (recipient_id, message_id),
        ).fetchone()
        is not None
    )


def hide(db: _Db, copies: Iterable[_Copy]) -> None:
    """Take copies, given as (owner, conversation, message), out of their owners' history."""
    db.executemany(
        "INSERT OR IGNORE INTO hidden(owner_id, message_id) VALUES (?, ?)",
        [(owner, message_id) for owner, _, message_id in copies],
    )


def collect(db: _Db, cache: StoreCache, message_ids: Iterable[int]) -> None:
    """Delete message rows that no member holds any more (with their hidden and pending
    rows: a pending copy is always held, so only a deleted member's can remain)."""
    for message_id in set(message_ids):
        row = db.execute(
            "SELECT conversation_id FROM messages WHERE id = ?", (message_id,)
        ).fetchone()
        if row is None:
            continue
        conversation = row[0]
        if not any(
            holds(db, cache, member, conversation, message_id)
            for member in cache.member_ids(conversation, db)
        ):
            _drop(db, cache, message_id, conversation)


def _drop(db: _Db, cache: StoreCache, message_id: int, conversation_id: int) -> None:
    """A message row and every row that refers to it."""
    members = [(member, message_id) for member in cache.member_ids(conversation_id, db)]
    db.executemany("DELETE FROM pending WHERE recipient_id = ? AND message_id = ?", members)
    db.executemany("DELETE FROM hidden WHERE owner_id = ? AND message_id = ?", members)
    db.execute("DELETE FROM messages WHERE id = ?", (message_id,))


__all__ = [
    "CHUNK",
    "collect",
    "delete_account",
    "delete_messages",
    "hide",
    "holds",
    "last_held",
    "prune_old",
    "prune_past_limit",
]
