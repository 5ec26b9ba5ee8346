"""A database written by the first releases (schema v1, user_version 0) upgrades in place and
loses nothing: every account logs in with its password, every pending message arrives."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from core import ChatService, HashCost, SqliteStore
from core.loopback import open_client
from core.migrations import LATEST, SchemaTooNew, upgrade, version
from core.passwords import make_hasher

# The schema exactly as `git show HEAD:core/store.py` had it before history (Rules 19-25).
TODAYS_SCHEMA = """
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

PASSWORDS = {"alice": "alice-pw", "bob": "bob-pw", "cy": "cy-pw", "dora": "dora-pw"}
# (id, sender, body, sent_at_ms, recipients still pending). Ids 2 and 5 were acked by all
# (v1 collected them); 7 was the last id handed out. "zed" deleted its account under
# --deleted-sender keep and never came back; "dora" deleted hers and signed up again at
# t=5000, so message 3 (t=3000) is from the old dora, message 6 (t=6000) from the new one.
MESSAGES = [
    (1, "alice", "hello bob", 1000, ["bob"]),
    (3, "dora", "from the old dora", 3000, ["bob"]),
    (4, "alice", "to the group: ünïcødé ✓", 4000, ["bob", "cy"]),
    (6, "dora", "from the new dora", 6000, ["alice"]),
    (7, "zed", "from a deleted account", 7000, ["cy"]),
]
CREATED = {"alice": 100, "bob": 200, "cy": 300, "dora": 5000}


def write_v1_database(path: Path) -> None:
    """A file as today's server leaves it: WAL, user_version 0, ids with acked gaps."""
    hasher = make_hasher(HashCost.LOW)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(TODAYS_SCHEMA)
    for name, password in PASSWORDS.items():
        db.execute(
            "INSERT INTO accounts VALUES (?, ?, ?)", (name, hasher.hash(password), CREATED[name])
        )
    for message_id in range(1, 8):
        db.execute(
            "INSERT INTO messages(id, sender, body, sent_at_ms) VALUES (?, 'x', 'acked', 0)",
            (message_id,),
        )
    kept = {m[0] for m in MESSAGES}
    for message_id, sender, body, sent_at, recipients in MESSAGES:
        db.execute(
            "UPDATE messages SET sender = ?, body = ?, sent_at_ms = ? WHERE id = ?",
            (sender, body, sent_at, message_id),
        )
        for recipient in recipients:
            db.execute("INSERT INTO pending VALUES (?, ?)", (recipient, message_id))
    db.execute(f"DELETE FROM messages WHERE id NOT IN ({','.join(map(str, kept))})")
    assert version(db) == 0
    db.close()


def pending_of(name: str) -> list[tuple[int, str, str, int, bool]]:
    return [
        (mid, sender, body, sent_at, sender == "zed" or (sender, mid) == ("dora", 3))
        for mid, sender, body, sent_at, to in MESSAGES
        if name in to
    ]


@pytest.fixture
def v1_file(tmp_path) -> Path:
    path = tmp_path / "chat.db"
    write_v1_database(path)
    return path


async def test_a_v1_file_upgrades_in_place_with_every_account_and_pending_message(v1_file):
    store = SqliteStore(v1_file)
    assert version(store._db) == LATEST
    assert await store.list_accounts("*", "", 100) == sorted(PASSWORDS)
    for name in PASSWORDS:
        account = await store.find_account(name)
        assert account is not None and account.password_hash.startswith("$argon2id$")
        expected = pending_of(name)
        assert await store.pending_count(account.id) == len(expected)
        got = await store.pending_after(account.id, 0, 100)
        assert [
            (d.message_id, d.sender, d.body, d.sent_at_ms, d.sender_deleted) for d in got
        ] == expected
    bob = await store.find_account("bob")
    assert bob is not None
    [_, _, group] = await store.pending_after(bob.id, 0, 100)
    assert group.participants == ("alice", "cy")  # a group message still looks like one
    await store.close()


async def test_after_the_upgrade_login_pending_ack_and_new_ids_work(v1_file):
    service = ChatService(SqliteStore(v1_file), hash_cost=HashCost.LOW)
    bob = open_client(service)
    await bob.connect()
    assert (await bob.login("bob", "bob-pw")).pending == 3
    got = [await bob.next_message(5) for _ in range(3)]  # acked as they are handed over
    assert [m.body for m in got] == [m[2] for m in MESSAGES if "bob" in m[4]]
    result = await bob.send(["alice"], "new after the upgrade")
    assert result.message_id > 7  # never an id v1 already handed out
    history = await bob.read_history(["alice"])
    assert [m.body for m in history.messages] == ["new after the upgrade", "hello bob"]
    await bob.close()

    again = open_client(service)
    await again.connect()
    assert (await again.login("bob", "bob-pw")).pending == 0  # the acks held
    await again.close()
    await service.store.close()

    reopened = SqliteStore(v1_file)  # opening an upgraded file again changes nothing
    assert version(reopened._db) == LATEST
    cy = await reopened.find_account("cy")
    assert cy is not None and await reopened.pending_count(cy.id) == 2
    await reopened.close()


async def test_a_fresh_file_starts_at_the_latest_version(tmp_path):
    store = SqliteStore(tmp_path / "new.db")
    assert version(store._db) == LATEST
    await store.close()


def test_a_file_from_a_newer_wirechat_is_refused(tmp_path):
    db = sqlite3.connect(tmp_path / "future.db", isolation_level=None)
    db.execute(f"PRAGMA user_version={LATEST + 1}")
    with pytest.raises(SchemaTooNew, match="upgrade wirechat"):
        upgrade(db)
    db.close()


def test_a_failed_migration_leaves_the_file_as_it_was(v1_file, monkeypatch):
    from core import migrations

    def broken(db: sqlite3.Connection) -> None:
        migrations._v2(db)
        raise RuntimeError("power cut")

    monkeypatch.setattr(migrations, "MIGRATIONS", (migrations._v1, broken))
    db = sqlite3.connect(v1_file, isolation_level=None)
    with pytest.raises(RuntimeError, match="power cut"):
        upgrade(db)
    assert version(db) in (0, 1)
    assert db.execute("SELECT count(*) FROM pending").fetchone()[0] == 6
    assert db.execute("SELECT username FROM accounts LIMIT 1").fetchone() is not None
    db.close()


def test_a_second_process_that_read_an_old_version_skips_what_the_first_did(v1_file, monkeypatch):
    from core import migrations

    SqliteStore(v1_file)  # the first process upgrades the file
    db = sqlite3.connect(v1_file, isolation_level=None)
    real_version = migrations.version
    calls = iter([0])  # the second one read version 0 just before the first committed

    def stale_then_real(conn: sqlite3.Connection) -> int:
        stale = next(calls, None)
        return real_version(conn) if stale is None else stale

    monkeypatch.setattr(migrations, "version", stale_then_real)
    assert upgrade(db) == LATEST
    assert real_version(db) == LATEST
    assert db.execute("SELECT count(*) FROM pending").fetchone()[0] == 6  # nothing redone
    db.close()
