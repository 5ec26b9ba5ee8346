"""Rule 16: what the server acknowledged survives kill -9 and a restart (SQLite WAL)."""

from __future__ import annotations

import pytest

from core import AuthFailed
from tests.conformance.conftest import Chat
from tests.conformance.helpers import receive_bodies
from transports import registry
from wirechat.launch import ServerProcess


@pytest.mark.parametrize("transport", registry.WIRE_TRANSPORTS)
async def test_rule16_acknowledged_messages_and_accounts_survive_kill_9(
    transport, tmp_path, test_tls
):
    tls = test_tls.server if test_tls else None
    server = ServerProcess([transport], tmp_path / "durable.db", tls=tls).start()
    try:
        chat = Chat(transport, server.addresses[transport], test_tls)
        alice = await chat.user("alice")
        await chat.user("bob")
        await chat.user("gone")
        sent = [f"message {i}" for i in range(20)]
        for body in sent:
            await alice.send(["bob"], body)  # each returned: acknowledged as stored
        gone = await chat.login("gone")
        await gone.delete_account("gone", "pw-secret-123")
        await chat.aclose()

        server.kill9()
        server.start()  # same database; fresh ports, so no other process can hold the old one

        chat = Chat(transport, server.addresses[transport], test_tls)
        bob = await chat.client()
        assert (await bob.login("bob", "pw-secret-123")).pending == len(sent)
        assert await receive_bodies(bob, len(sent)) == sent
        with pytest.raises(AuthFailed):  # the deletion was acknowledged too
            await (await chat.client()).login("gone", "pw-secret-123")
        await chat.aclose()
    finally:
        server.stop()
