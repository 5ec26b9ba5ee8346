"""Issue 14, defect 7: with 200,000 accounts, a list_accounts pattern that no index can narrow
(a leading wildcard, matching nothing) is a scan of the whole table. It must not hold the
server's loop: another user's requests are answered while it runs."""

from __future__ import annotations

import asyncio
import sqlite3
import statistics

import pytest

from core import ChatClient, SqliteStore
from transports import registry
from wirechat.launch import ServerProcess

pytestmark = pytest.mark.timeout(180)
TRANSPORT = "custom"
ACCOUNTS = 200_000
SCANS_IN_FLIGHT = 4  # as in the report: one client, four calls at once
BATCHES = 6
CANARY_PER_BATCH = 10  # canary round trips a batch of scans must leave room for


async def _make_accounts(path: str) -> None:
    """The schema through the store, then the rows straight into the file (fast)."""
    store = SqliteStore(path)
    await store.close()
    with sqlite3.connect(path) as db:
        db.executemany(
            "INSERT INTO accounts(username, password_hash, created_at_ms) VALUES (?, '', 0)",
            ((f"user{i:06d}",) for i in range(ACCOUNTS)),
        )


async def _client(address: tuple[str, int], name: str) -> ChatClient:
    client = registry.get(TRANSPORT).open_client(address)
    await client.connect()
    await client.signup(name, "pw-12345678")
    return client


async def test_a_full_scan_of_200k_accounts_does_not_hold_other_users_up(tmp_path):
    db = str(tmp_path / "many.db")
    await _make_accounts(db)
    server = ServerProcess([TRANSPORT], db).start()
    try:
        address = server.addresses[TRANSPORT]
        mallory = await _client(address, "mallory")
        alice = await _client(address, "alice")
        await _client(address, "bob")
        # The scan is correct (nothing matches; the prefix forms use the index).
        assert (await mallory.list_accounts("*zzz*")).usernames == ()
        page = await mallory.list_accounts("user19999?", "", 3)
        assert page.usernames == ("user199990", "user199991", "user199992") and page.more

        answered: list[int] = []
        for _ in range(BATCHES):
            scans = asyncio.gather(
                *(mallory.list_accounts("*zzz*") for _ in range(SCANS_IN_FLIGHT))
            )
            round_trips = 0
            async with asyncio.timeout(60):
                while not scans.done() and round_trips < CANARY_PER_BATCH:
                    await alice.send(["bob"], f"canary {round_trips}")
                    round_trips += 1
                pages = await scans
            assert all(p.usernames == () for p in pages)
            answered.append(round_trips)
        # A scan on the loop left the canary about one round trip per batch.
        assert statistics.median(answered) >= CANARY_PER_BATCH, answered
    finally:
        server.stop()
