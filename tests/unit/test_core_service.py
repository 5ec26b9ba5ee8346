"""Core behaviour that only the core can see: hashes at rest, throttle, slow consumers."""

from __future__ import annotations

import asyncio
import sqlite3

import pytest

from core import ChatService, CloseReason, HashCost, SqliteStore, limits
from core.loopback import LoopbackTransport, open_client
from core.throttle import LoginThrottle


@pytest.fixture
def service(tmp_path):
    return ChatService(SqliteStore(tmp_path / "chat.db"), hash_cost=HashCost.LOW)


async def test_passwords_are_stored_only_as_argon2id_hashes(service, tmp_path):
    client = open_client(service)
    await client.connect()
    await client.signup("alice", "correct horse battery staple")
    db = sqlite3.connect(tmp_path / "chat.db")
    [(stored,)] = db.execute("SELECT password_hash FROM accounts WHERE username='alice'")
    assert stored.startswith("$argon2id$")
    assert "correct horse" not in stored
    raw = (tmp_path / "chat.db").read_bytes() + (tmp_path / "chat.db-wal").read_bytes()
    assert b"correct horse" not in raw


async def test_a_slow_consumer_is_disconnected_and_its_messages_stay_pending(service):
    sender, reader = open_client(service), open_client(service)
    await sender.connect()
    await sender.signup("alice", "pw-secret-1")
    await reader.connect()
    await reader.signup("bob", "pw-secret-1")
    transport = reader.transport
    assert isinstance(transport, LoopbackTransport)
    session = transport._session
    assert session is not None and transport._pump is not None
    transport._pump.cancel()  # the transport stops reading: nothing drains the session queue
    await asyncio.sleep(0)
    total = limits.MAX_SESSION_QUEUE + 1
    for i in range(total):
        await sender.send(["bob"], f"m{i}")
    assert session.closed and session.close_reason is CloseReason.SLOW_CONSUMER
    again = open_client(service)
    await again.connect()
    assert (await again.login("bob", "pw-secret-1")).pending == total


async def test_throttle_delays_grow_and_are_capped():
    throttle = LoginThrottle(base=0.25, cap=2.0, free_failures=3)
    delays = []
    for _ in range(8):
        with pytest.raises(ValueError):
            async with throttle.attempt("mallory"):
                raise ValueError
        delays.append(throttle.delay("mallory"))
        throttle._pairs[("mallory", None)].last -= 10  # skip the wait in this unit test
    assert delays == [0.0, 0.0, 0.25, 0.5, 1.0, 2.0, 2.0, 2.0]
    async with throttle.attempt("mallory"):
        pass
    assert throttle.delay("mallory") == 0.0  # a success clears the record


async def test_concurrent_signups_of_one_name_give_one_account(service):
    clients = [open_client(service) for _ in range(5)]
    for client in clients:
        await client.connect()
    results = await asyncio.gather(
        *(client.signup("dup", "pw-secret-1") for client in clients), return_exceptions=True
    )
    assert sum(not isinstance(r, Exception) for r in results) == 1


async def test_acks_of_ids_that_cannot_exist_are_ignored(service):
    client = open_client(service)
    await client.connect()
    await client.signup("alice", "pw-secret-1")
    await client.ack([0, 2**63, 2**64 - 1])  # no error, nothing to mark
    await client.send(["alice"], "still fine")
    assert (await client.next_message(5)).body == "still fine"
