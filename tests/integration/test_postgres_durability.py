"""Rule 16 on PostgreSQL: what a server acknowledged survives kill -9 of that server, and a
restart on the same database (as a node of a cluster would be restarted) loses nothing.
Also: two servers on one database see each other's accounts and messages (no stale cache)."""

from __future__ import annotations

import asyncio

import pytest

from core import AuthFailed, UsernameTaken
from tests.conformance.conftest import Chat
from tests.conformance.helpers import receive_bodies
from wirechat.launch import ServerProcess
from wirechat.services import PostgresService

TRANSPORT = "custom"


async def test_acknowledged_messages_survive_kill_9_of_the_server(postgres: PostgresService, names):
    alice, bob, gone = names("alice"), names("bob"), names("gone")
    server = ServerProcess([TRANSPORT], postgres.url).start()
    try:
        chat = Chat(TRANSPORT, server.addresses[TRANSPORT])
        senders = [await chat.user(alice), await chat.user(gone)]
        await chat.user(bob)
        # Concurrent senders: every send that returned was acknowledged as stored.
        sent: dict[str, list[str]] = {alice: [], gone: []}

        async def send_all(client, who: str) -> None:
            for i in range(15):
                body = f"{who} {i}"
                await client.send([bob], body)
                sent[who].append(body)

        await asyncio.gather(send_all(senders[0], alice), send_all(senders[1], gone))
        # --deleted-sender purge: its 15 go with it
        await senders[1].delete_account(gone, "pw-secret-123")
        await chat.aclose()

        server.kill9()
        server.start()  # the same database, fresh ports

        chat = Chat(TRANSPORT, server.addresses[TRANSPORT])
        reader = await chat.client()
        assert (await reader.login(bob, "pw-secret-123")).pending == len(sent[alice])
        assert await receive_bodies(reader, len(sent[alice])) == sent[alice]  # in order
        with pytest.raises(AuthFailed):  # the deletion was acknowledged too
            await (await chat.client()).login(gone, "pw-secret-123")
        await chat.aclose()
    finally:
        server.stop()


async def test_two_servers_on_one_database_share_accounts_and_pending(
    postgres: PostgresService, names
):
    alice, bob = names("alice"), names("bob")
    one = ServerProcess([TRANSPORT], postgres.url).start()
    two = ServerProcess([TRANSPORT], postgres.url).start()
    try:
        on_one = Chat(TRANSPORT, one.addresses[TRANSPORT])
        on_two = Chat(TRANSPORT, two.addresses[TRANSPORT])
        sender = await on_one.user(alice)
        await on_two.user(bob)
        with pytest.raises(UsernameTaken):  # one name, cluster-wide (a unique index)
            await on_two.user(alice)
        for i in range(5):
            await sender.send([bob], f"m{i}")
        # No bus yet: bob's session on the other node reads them at its next login.
        reader = await on_two.login(bob)
        assert await receive_bodies(reader, 5) == [f"m{i}" for i in range(5)]
        await on_one.aclose()
        await on_two.aclose()
    finally:
        one.stop()
        two.stop()
