"""Numbered schema migrations for the SQLite store (``PRAGMA user_version``).

A database records the number of the last migration applied to it in ``user_version``;
:func:`upgrade` applies the later ones in order, each in one transaction with its version
bump, so a crash mid-upgrade leaves the file at the previous version, whole. A file newer
than this code is refused rather than misread.

Version 1 is the schema of the first releases (accounts keyed by name, a message row while
some copy is pending). Those releases never set ``user_version``, so a v1 file reads 0; its
migration is ``CREATE TABLE IF NOT EXISTS``, a no-op on such a file and the start of a new one.

Version 2 (Rules 19-25): accounts get stable integer ids and the store keys on them; a
deleted account stays as a tombstone row (its name, no password) so that messages it sent
that are still in others' history show as from "<name> (deleted account)", never from a
later owner of the name. Messages belong to a conversation (its participants' ids);
``history`` holds every user's copies, ``read_state`` their read marks.

Schema v2
  accounts(id PK AUTOINCREMENT, username, password_hash, created_at_ms, deleted_at_ms NULL)
      unique(username) among live accounts (deleted_at_ms IS NULL)
  conversations(id PK, members UNIQUE)     -- members: account ids ascending, "3,17"
  messages(id PK AUTOINCREMENT, sender_id, conversation_id, body, sent_at_ms)
  history(owner_id, conversation_id, message_id) PK in that order   -- one row per user copy
  pending(recipient_id, message_id) PK                               -- not yet acked
  read_state(owner_id, conversation_id, up_to_id) PK(owner_id, conversation_id)
A pending copy always has its history row; a message row lives while some history row
points at it. Ids are AUTOINCREMENT: never reused, even across the v1 -> v2 upgrade.
Send is the hot path, so history and pending have no index but their keys and no foreign
keys (each would be one more b-tree write or lookup per copy, and v2 writes a history copy
per participant): the copies of a message are found through its conversation's members,
by the full key. The code keeps the references whole (the store-contract tests check it).

Version 3 (issue 13): resume tokens. A login gets a token that logs the account in again
without the password until it expires or is revoked; the table keeps only each token's
SHA-256 (never the token), so a copy of the file logs nobody in.
  resume_tokens(token_hash BLOB PK, account_id, expires_at_ms)   index (account_id, expires_at_ms)

Version 4 (issue 10, send saturation): a message is indexed once, by its conversation, instead
of once per participant. v3 wrote a ``history`` row per copy (two per 1:1 message, each at its
owner's place in the b-tree: most of a send's SQL); v4 writes one index entry per message.
  messages(...)                      + index messages_by_conversation(conversation_id, id)
  memberships(account_id, conversation_id) PK      -- who takes part in which conversation
  hidden(owner_id, message_id) PK                  -- copies gone from one owner's history
``history`` is dropped. The copies an owner holds are now implicit: an owner holds message m
when they are a member of m's conversation, their account is live, and (owner, m) is not in
``hidden`` (deleted for me, pruned by retention). A deleted account holds nothing (its
history went with it, Rule 25). A message row lives while some live member holds it; its
``hidden`` rows go with it. The upgrade writes a ``hidden`` row for every copy v3 lacked
(a live member of a message's conversation without its history row), so every owner sees
exactly what they saw before.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable

SCHEMA_V1 = """
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

# Created under temporary names next to the v1 tables, then renamed over them.
_TABLES_V2 = """
CREATE TABLE accounts_v2 (
    id            INTEGER PRIMARY KEY AUTOINCREMENT,
    username      TEXT NOT NULL,
    password_hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER
);
CREATE TABLE conversations (
    id      INTEGER PRIMARY KEY,
    members TEXT NOT NULL UNIQUE
);
CREATE TABLE messages_v2 (
    id              INTEGER PRIMARY KEY AUTOINCREMENT,
    sender_id       INTEGER NOT NULL,  -- accounts.id (never deleted: tombstones)
    conversation_id INTEGER NOT NULL,  -- conversations.id (never deleted)
    body            TEXT NOT NULL,
    sent_at_ms      INTEGER NOT NULL
);
CREATE TABLE history (
    owner_id        INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    message_id      INTEGER NOT NULL,  -- messages.id: the row lives while a copy does
    PRIMARY KEY (owner_id, conversation_id, message_id)
) WITHOUT ROWID;
CREATE TABLE pending_v2 (
    recipient_id INTEGER NOT NULL,
    message_id   INTEGER NOT NULL,  -- messages.id, always with the recipient's history copy
    PRIMARY KEY (recipient_id, message_id)
) WITHOUT ROWID;
CREATE TABLE read_state (
    owner_id        INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    up_to_id        INTEGER NOT NULL,
    PRIMARY KEY (owner_id, conversation_id)
) WITHOUT ROWID;
"""

_INDEXES_V2 = """
CREATE UNIQUE INDEX accounts_live_name ON accounts(username) WHERE deleted_at_ms IS NULL;
"""


def members_key(account_ids: set[int] | frozenset[int]) -> str:
    """The conversations.members text for a set of participants."""
    return ",".join(str(i) for i in sorted(account_ids))


def _v1(db: sqlite3.Connection) -> None:
    for statement in _statements(SCHEMA_V1):  # IF NOT EXISTS: a no-op on a v1 file
        db.execute(statement)


def _v2(db: sqlite3.Connection) -> None:
    """Ids for accounts; conversations, history and read state; nothing pending is lost.

    What v1 knew is carried over: every account (ids in signup order); every pending copy,
    also as a history row of its recipient and, if the sender still has its account, of the
    sender. A v1 message whose sender name has no account, or whose account was created
    after the message was sent (the name was registered again, --deleted-sender keep), gets
    a deleted-account tombstone as its sender. A message's conversation is its sender and
    the recipients it is still pending for (v1 kept no more than that).
    """
    for statement in _statements(_TABLES_V2):
        db.execute(statement)
    db.execute(
        "INSERT INTO accounts_v2(username, password_hash, created_at_ms)"
        " SELECT username, password_hash, created_at_ms FROM accounts"
        " ORDER BY created_at_ms, username"
    )
    live = {
        name: (account_id, created)
        for account_id, name, created in db.execute(
            "SELECT id, username, created_at_ms FROM accounts_v2"
        )
    }
    tombstones: dict[str, int] = {}

    def sender_id(name: str, sent_at_ms: int) -> tuple[int, bool]:
        found = live.get(name)
        if found is not None and found[1] <= sent_at_ms:
            return found[0], True
        if name not in tombstones:
            tombstones[name] = _insert_id(
                db,
                "INSERT INTO accounts_v2(username, password_hash, created_at_ms, deleted_at_ms)"
                " VALUES (?, '', ?, ?)",
                (name, sent_at_ms, sent_at_ms),
            )
        return tombstones[name], False

    recipients: dict[int, list[int]] = {}
    for message_id, name in db.execute(
        "SELECT p.message_id, p.recipient FROM pending p ORDER BY p.message_id"
    ):
        recipients.setdefault(message_id, []).append(live[name][0])
    conversations: dict[str, int] = {}
    rows = db.execute("SELECT id, sender, body, sent_at_ms FROM messages ORDER BY id").fetchall()
    for message_id, sender, body, sent_at_ms in rows:
        to = recipients.get(message_id)
        if not to:
            continue  # no copy pending: v1 would have collected it
        sender_account, sender_live = sender_id(sender, sent_at_ms)
        key = members_key({sender_account, *to})
        if key not in conversations:
            conversations[key] = _insert_id(
                db, "INSERT INTO conversations(members) VALUES (?)", (key,)
            )
        conversation = conversations[key]
        db.execute(
            "INSERT INTO messages_v2(id, sender_id, conversation_id, body, sent_at_ms)"
            " VALUES (?, ?, ?, ?, ?)",
            (message_id, sender_account, conversation, body, sent_at_ms),
        )
        owners = set(to) | ({sender_account} if sender_live else set())
        db.executemany(
            "INSERT INTO history(owner_id, conversation_id, message_id) VALUES (?, ?, ?)",
            [(owner, conversation, message_id) for owner in owners],
        )
        db.executemany(
            "INSERT INTO pending_v2(recipient_id, message_id) VALUES (?, ?)",
            [(recipient, message_id) for recipient in to],
        )
    # Message ids must keep increasing past every id v1 ever handed out (acked ones too).
    row = db.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    last_v1_id = row[0] if row else 0
    db.execute("DROP TABLE pending")
    db.execute("DROP TABLE messages")
    db.execute("DROP TABLE accounts")
    for name in ("accounts", "messages", "pending"):
        db.execute(f"ALTER TABLE {name}_v2 RENAME TO {name}")
    db.execute(
        "UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'messages'", (last_v1_id,)
    )
    if (
        last_v1_id
        and not db.execute("SELECT 1 FROM sqlite_sequence WHERE name = 'messages'").fetchone()
    ):
        db.execute("INSERT INTO sqlite_sequence(name, seq) VALUES ('messages', ?)", (last_v1_id,))
    for statement in _statements(_INDEXES_V2):
        db.execute(statement)


_TABLES_V3 = """
CREATE TABLE resume_tokens (
    token_hash    BLOB PRIMARY KEY,  -- SHA-256 of the token the client holds
    account_id    INTEGER NOT NULL REFERENCES accounts(id),
    expires_at_ms INTEGER NOT NULL
) WITHOUT ROWID;
CREATE INDEX resume_tokens_by_account ON resume_tokens(account_id, expires_at_ms)
"""


def _v3(db: sqlite3.Connection) -> None:
    for statement in _statements(_TABLES_V3):
        db.execute(statement)


_TABLES_V4 = """
CREATE TABLE memberships (
    account_id      INTEGER NOT NULL,
    conversation_id INTEGER NOT NULL,
    PRIMARY KEY (account_id, conversation_id)
) WITHOUT ROWID;
CREATE TABLE hidden (
    owner_id   INTEGER NOT NULL,
    message_id INTEGER NOT NULL,  -- messages.id: deleted with the message row
    PRIMARY KEY (owner_id, message_id)
) WITHOUT ROWID;
CREATE INDEX messages_by_conversation ON messages(conversation_id, id)
"""


def _v4(db: sqlite3.Connection) -> None:
    """History by conversation: memberships from conversations.members, a ``hidden`` row
    for every copy a live member lacked, then ``history`` goes (module docstring)."""
    for statement in _statements(_TABLES_V4):
        db.execute(statement)
    members = [
        (int(account), conversation)
        for conversation, key in db.execute("SELECT id, members FROM conversations").fetchall()
        for account in key.split(",")
        if account
    ]
    db.executemany(
        "INSERT OR IGNORE INTO memberships(account_id, conversation_id) VALUES (?, ?)", members
    )
    db.execute(
        "INSERT INTO hidden(owner_id, message_id)"
        " SELECT c.account_id, m.id FROM messages m"
        " JOIN memberships c ON c.conversation_id = m.conversation_id"
        " JOIN accounts a ON a.id = c.account_id AND a.deleted_at_ms IS NULL"
        " WHERE NOT EXISTS (SELECT 1 FROM history h WHERE h.owner_id = c.account_id"
        " AND h.conversation_id = m.conversation_id AND h.message_id = m.id)"
    )
    db.execute("DROP TABLE history")


#: Migration n brings a database from version n-1 to n.
MIGRATIONS: tuple[Callable[[sqlite3.Connection], None], ...] = (_v1, _v2, _v3, _v4)
LATEST = len(MIGRATIONS)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer wirechat; this one cannot read it safely."""


def version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])


def upgrade(db: sqlite3.Connection) -> int:
    """Apply every migration the database lacks; returns the version it is now at.

    ``db`` must be in autocommit mode (``isolation_level=None``). Foreign keys are off while
    a migration rebuilds tables (SQLite's documented recipe) and back on after.
    """
    current = version(db)
    if current > LATEST:
        raise SchemaTooNew(
            f"the database is at schema version {current}, newer than this server "
            f"understands ({LATEST}); upgrade wirechat"
        )
    if current == LATEST:
        return current
    (foreign_keys,) = db.execute("PRAGMA foreign_keys").fetchone()
    db.execute("PRAGMA foreign_keys=OFF")
    try:
        for number in range(current + 1, LATEST + 1):
            db.execute("BEGIN IMMEDIATE")  # one upgrader at a time; others wait, then skip
            try:
                if version(db) >= number:  # another process upgraded it while we waited
                    db.execute("COMMIT")
                    continue
                MIGRATIONS[number - 1](db)
                problems = db.execute("PRAGMA foreign_key_check").fetchall()
                if problems:
                    raise RuntimeError(f"migration {number} broke references: {problems[:5]}")
                db.execute(f"PRAGMA user_version={number}")
                db.execute("COMMIT")
            except BaseException:
                if db.in_transaction:
                    db.execute("ROLLBACK")
                raise
    finally:
        db.execute(f"PRAGMA foreign_keys={'ON' if foreign_keys else 'OFF'}")
    return LATEST


def _insert_id(db: sqlite3.Connection, sql: str, args: tuple[object, ...]) -> int:
    row_id = db.execute(sql, args).lastrowid
    assert row_id is not None
    return row_id


def _statements(script: str) -> list[str]:
    """The statements of a DDL script (which must have no ';' in its comments)."""
    return [s.strip() for s in script.split(";") if s.strip()]


__all__ = ["LATEST", "MIGRATIONS", "SCHEMA_V1", "SchemaTooNew", "members_key", "upgrade", "version"]
