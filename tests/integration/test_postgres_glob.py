"""The PostgreSQL store reads SQLite GLOB patterns (what the service hands every store) as
SQLite does: the same names, in the same order, for the same pattern."""

from __future__ import annotations

import asyncpg

from core import postgres_migrations
from core.postgres_store import PostgresStore
from core.store import SqliteStore
from wirechat.services import PostgresService

NAMES = ["a", "ab", "a.b", "a_b", "a-b", "[a]", "a]b", "B", "b1", "é", "Ω9", "a\\b", "x:y", "z"]
PATTERNS = [
    "*", "a*", "a?b", "[[]a]", "[ab]*", "[^a]*", "[]]*", "*[]]b", "[a-b]*", "[[:]*", "?",
    "a\\b", "a[\\]b", "é*", "*9", "[", "a[b", "a\x00", "", "*.*", "%", "a_b",
]  # fmt: skip


async def test_list_accounts_matches_sqlite_glob(postgres: PostgresService, tmp_path):
    conn = await asyncpg.connect(postgres.url)
    pg = await PostgresStore(postgres.url, pool_size=1).open()
    try:
        await conn.execute(f"TRUNCATE {', '.join(postgres_migrations.TABLES)} RESTART IDENTITY")
        lite = SqliteStore(tmp_path / "glob.db")
        for name in NAMES:
            await pg.create_account(name, "h", 0)
            await lite.create_account(name, "h", 0)
        for pattern in PATTERNS:
            for after in ("", "a"):
                want = await lite.list_accounts(pattern, after, 100)
                assert await pg.list_accounts(pattern, after, 100) == want, (pattern, after)
        await lite.close()
    finally:
        await pg.close()
        await conn.close()
