"""Numbered schema migrations for the PostgreSQL store.

The table ``wirechat_schema`` records the version of the last migration applied.
:func:`upgrade` runs each missing migration in one transaction with its version bump,
under a transaction-level advisory lock, so several nodes starting at once upgrade the
database exactly once (the others wait, then see the new version and skip). A database
newer than this code is refused rather than misread.

Schema v1 (the SQLite schema v2 of ``core.migrations``, Rules 19-25, plus what a cluster
needs)
  accounts(id identity, username COLLATE "C", password_hash, created_at_ms, deleted_at_ms,
           last_seq)   -- unique(username) among live accounts: a partial unique index
  conversations(id identity, members bigint[] UNIQUE)   -- account ids ascending
  messages(id identity, sender_id, conversation_id, body bytea, sent_at_ms)
  history(owner_id, conversation_id, message_id) PK       -- one row per user copy
  pending(recipient_id, message_id) PK, seq               -- not yet acked
  read_state(owner_id, conversation_id) PK, up_to_id

Ids come from sequences (identity columns), so every node draws from one counter.
``accounts.last_seq`` is a per-recipient sequence: ``add_message`` increments it under the
recipient's row lock and stores the new value in ``pending.seq``. Row locks make one
recipient's messages commit in seq order, which global ids cannot promise across nodes
(DESIGN.md "Scale-out"): the bus will carry (seq, previous seq) so a node can see a gap and
read what it missed from ``pending``. Usernames are ``COLLATE "C"``: byte order, which for
UTF-8 is code point order, as SQLite's binary collation sorts them.

Schema v2 (issue 13; the SQLite schema v3): resume tokens, only each token's SHA-256.
  resume_tokens(token_hash bytea PK, account_id, expires_at_ms)  index (account_id, expires_at_ms)

Schema v3 (issue 11, the cluster's bus): index history(owner_id, message_id), so a node reads a
user's newest received message (where its feed starts) and what a gap missed by id range
without walking the user's whole history (core.nats_bus).

Schema v4 (issue 11: notices repairable like messages): the notice log.
  notices(owner_id, seq) PK, kind, conversation_id, up_to_id, unread, message_ids, origin, at_ms
A notice for a user (a read mark, ids gone from its history, "end every session" after a
password change) takes the user's next ``accounts.last_seq``, as a delivery does, in the
transaction that makes it true; a node that missed it on the bus sees the gap in the
sequence and reads it here (core.postgres_base). Kept ``NOTICE_RETENTION`` seconds
(core.nats_bus), pruned through index notices_by_time.
"""

from __future__ import annotations

from collections.abc import Sequence

import asyncpg  # type: ignore[import-untyped]  # (no stubs shipped)

#: Any constant: the advisory lock every upgrader takes ("wirechat" in ASCII, as a number).
_LOCK_KEY = 0x77697265636861

_V1 = (
    """CREATE TABLE accounts (
        id            bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        username      text COLLATE "C" NOT NULL,
        password_hash text NOT NULL,
        created_at_ms bigint NOT NULL,
        deleted_at_ms bigint,
        last_seq      bigint NOT NULL DEFAULT 0
    )""",
    "CREATE UNIQUE INDEX accounts_live_name ON accounts(username) WHERE deleted_at_ms IS NULL",
    """CREATE TABLE conversations (
        id      bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        members bigint[] NOT NULL UNIQUE
    )""",
    """CREATE TABLE messages (
        id              bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
        sender_id       bigint NOT NULL,  -- accounts.id (never deleted: tombstones)
        conversation_id bigint NOT NULL,  -- conversations.id (never deleted)
        body            bytea NOT NULL,   -- UTF-8: text cannot hold NUL, a valid body
        sent_at_ms      bigint NOT NULL
    )""",
    # delete_account with --deleted-sender purge finds the account's messages by sender.
    "CREATE INDEX messages_by_sender ON messages(sender_id)",
    """CREATE TABLE history (
        owner_id        bigint NOT NULL,
        conversation_id bigint NOT NULL,
        message_id      bigint NOT NULL,
        PRIMARY KEY (owner_id, conversation_id, message_id)
    )""",
    """CREATE TABLE pending (
        recipient_id bigint NOT NULL,
        message_id   bigint NOT NULL,
        seq          bigint NOT NULL,  -- the recipient's accounts.last_seq for this message
        PRIMARY KEY (recipient_id, message_id)
    )""",
    """CREATE TABLE read_state (
        owner_id        bigint NOT NULL,
        conversation_id bigint NOT NULL,
        up_to_id        bigint NOT NULL,
        PRIMARY KEY (owner_id, conversation_id)
    )""",
)

_V2 = (
    """CREATE TABLE resume_tokens (
        token_hash    bytea PRIMARY KEY,  -- SHA-256 of the token the client holds
        account_id    bigint NOT NULL REFERENCES accounts(id),
        expires_at_ms bigint NOT NULL
    )""",
    "CREATE INDEX resume_tokens_by_account ON resume_tokens(account_id, expires_at_ms)",
)

_V3 = ("CREATE INDEX history_by_owner_message ON history(owner_id, message_id)",)

_V4 = (
    """CREATE TABLE notices (
        owner_id        bigint NOT NULL,  -- accounts.id
        seq             bigint NOT NULL,  -- the owner's accounts.last_seq for this notice
        kind            text NOT NULL,    -- 'read', 'gone', or a CloseReason name (the end)
        conversation_id bigint,           -- read: the conversation, the mark, unread count
        up_to_id        bigint,
        unread          bigint,
        message_ids     bigint[],         -- gone: the ids that left the owner's history
        origin          text NOT NULL,    -- the node that wrote it (--node-name)
        at_ms           bigint NOT NULL,
        PRIMARY KEY (owner_id, seq)
    )""",
    "CREATE INDEX notices_by_time ON notices(at_ms)",
)

#: Migration n brings a database from version n-1 to n (each a list of statements).
MIGRATIONS: tuple[Sequence[str], ...] = (_V1, _V2, _V3, _V4)
LATEST = len(MIGRATIONS)
#: The tables a test may empty between tests (everything but the version).
TABLES = (
    "accounts",
    "conversations",
    "messages",
    "history",
    "pending",
    "read_state",
    "resume_tokens",
    "notices",
)


class SchemaTooNew(RuntimeError):
    """The database was written by a newer wirechat; this one cannot read it safely."""


async def version(conn: asyncpg.Connection) -> int:
    """The schema version of the database (0: no wirechat tables yet)."""
    exists = await conn.fetchval("SELECT to_regclass('wirechat_schema') IS NOT NULL")
    if not exists:
        return 0
    return int(await conn.fetchval("SELECT coalesce(max(version), 0) FROM wirechat_schema"))


async def upgrade(conn: asyncpg.Connection) -> int:
    """Apply every migration the database lacks; returns the version it is now at."""
    for number in range(1, LATEST + 1):
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK_KEY)
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS wirechat_schema ("
                " version integer PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            current = await version(conn)
            if current > LATEST:
                raise SchemaTooNew(
                    f"the database is at schema version {current}, newer than this server "
                    f"understands ({LATEST}); upgrade wirechat"
                )
            if current >= number:
                continue
            for statement in MIGRATIONS[number - 1]:
                await conn.execute(statement)
            await conn.execute("INSERT INTO wirechat_schema(version) VALUES ($1)", number)
    return await version(conn)


__all__ = ["LATEST", "MIGRATIONS", "TABLES", "SchemaTooNew", "upgrade", "version"]
