"""kill -9 under a sustained, concurrent write load with group commit (issues 10 and 14):
every send whose reply a client received is still pending for its recipient after a restart
on the same file, and nothing is stored twice (DESIGN Rules 9, 16)."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3

from core import ChatClient
from transports import registry
from wirechat.launch import ServerProcess

TRANSPORT = "custom"
CLIENTS = 6  # connections, each its own sender
IN_FLIGHT = 8  # pipelined sends per connection
KILL_AFTER = 600  # acknowledged sends before the kill (the load keeps going meanwhile)
MAX_PER_WORKER = 400  # bound on each worker's sends
DEADLINE_S = 30.0


async def _client(address: tuple[str, int]) -> ChatClient:
    client = registry.get(TRANSPORT).open_client(address)
    await client.connect()
    return client


async def test_acknowledged_sends_survive_kill_9_under_concurrent_load(tmp_path):
    db = tmp_path / "load.db"
    server = ServerProcess([TRANSPORT], db).start()
    try:
        address = server.addresses[TRANSPORT]
        bob = await _client(address)
        await bob.signup("bob", "pw-secret-123")
        await bob.close()
        senders = []
        for c in range(CLIENTS):
            sender = await _client(address)
            await sender.signup(f"s{c}", "pw-secret-123")
            senders.append(sender)

        acked: dict[str, int] = {}  # body -> message id, for every reply received
        enough = asyncio.Event()

        async def worker(sender: ChatClient, c: int, w: int) -> None:
            for n in range(MAX_PER_WORKER):
                body = f"s{c}-w{w}-{n}"
                try:
                    result = await sender.send(["bob"], body)
                except Exception:  # the server died under us: that send was not acked
                    return
                acked[body] = result.message_id
                if len(acked) >= KILL_AFTER:
                    enough.set()

        workers = [
            asyncio.ensure_future(worker(sender, c, w))
            for c, sender in enumerate(senders)
            for w in range(IN_FLIGHT)
        ]
        async with asyncio.timeout(DEADLINE_S):
            await enough.wait()
        server.kill9()  # mid-load: every worker still has sends in flight
        async with asyncio.timeout(DEADLINE_S):
            await asyncio.gather(*workers)
        for sender in senders:
            with contextlib.suppress(Exception):
                await sender.close()
        assert len(acked) >= KILL_AFTER
        assert len(set(acked.values())) == len(acked)  # one id per acknowledged send

        server.start()  # same file
        bob = await _client(server.addresses[TRANSPORT])
        pending = (await bob.login("bob", "pw-secret-123")).pending
        assert pending >= len(acked)  # (sends stored but cut off before their reply count too)
        received = [await bob.next_message(10.0) for _ in range(pending)]
        await bob.close()
    finally:
        server.stop()

    bodies = {m.body: m.message_id for m in received}
    assert len(bodies) == len(received)  # no message stored twice
    assert all(bodies.get(body) == message_id for body, message_id in acked.items())
    with sqlite3.connect(db) as file:  # and the file agrees, whatever the client filtered
        (rows,) = file.execute("SELECT count(*) FROM messages").fetchone()
        (distinct,) = file.execute("SELECT count(DISTINCT body) FROM messages").fetchone()
    assert rows == distinct == pending
