"""Rule 6 on one client: logout ends the login, not the connection; the client logs in again.

The reference behaviour is the custom protocol's (one connection, one session that logs in and
out) and the loopback's; a gRPC client, whose pushes travel on one Subscribe stream per login,
must not let the stream of a login it left decide anything about the next one.
"""

from __future__ import annotations

import pytest

from core import NotLoggedIn
from tests.conformance.helpers import receive, receive_bodies

ROUNDS = 30  # the bench cycles signup/logout/login/logout on one client this way


async def test_rule06_after_logout_the_same_client_logs_in_again(chat, names):
    alice, bob, peer = names("alice"), names("bob"), names("peer")
    sender = await chat.user(peer)
    client = await chat.user(alice)
    await client.logout()
    with pytest.raises(NotLoggedIn):  # logged out, but the client is not spent
        await client.send([peer], "still there?")
    assert client.closed_reason is None

    for_alice = await sender.send([alice], "for alice, while she is away")
    await client.signup(bob, "pw-secret-123")  # another account, on the same client
    for_bob = await sender.send([bob], "for bob")
    # Nothing of alice's reaches the client while it is bob's: bob's message comes first.
    assert [m.message_id for m in await receive(client)] == [for_bob.message_id]
    await client.logout()

    assert (await client.login(alice, "pw-secret-123")).pending == 1
    assert [m.message_id for m in await receive(client)] == [for_alice.message_id]
    await client.send([peer], "back again")
    assert await receive_bodies(sender) == ["back again"]


async def test_rule06_many_logout_login_cycles_on_one_client(chat, names):
    """The calls follow each other at once, as a script or the bench issues them."""
    peer = names("peer")
    sender = await chat.user(peer)
    client = await chat.client()
    for i in range(ROUNDS):
        me = names(f"cycle{i}")
        await client.signup(me, "pw-secret-123")
        await client.send([peer], f"hello {i}")
        await client.logout()
        pending = await sender.send([me], f"while away {i}")
        assert (await client.login(me, "pw-secret-123")).pending == 1
        assert [m.message_id for m in await receive(client)] == [pending.message_id]
        await client.logout()
    assert client.closed_reason is None
    assert await receive_bodies(sender, ROUNDS) == [f"hello {i}" for i in range(ROUNDS)]
