"""Users on different transports share one server: they chat, share sessions and deletions."""

from __future__ import annotations

import itertools

import pytest

from tests.conformance.conftest import Chat
from tests.conformance.helpers import closed_within, receive_bodies
from transports import registry

PAIRS = list(itertools.permutations(registry.WIRE_TRANSPORTS, 2)) or [
    (name, name) for name in registry.WIRE_TRANSPORTS
]


@pytest.fixture
async def pair(request, wire_server, test_tls):
    first, second = request.param
    chats = (
        Chat(first, wire_server.addresses[first], test_tls),
        Chat(second, wire_server.addresses[second], test_tls),
    )
    try:
        yield chats
    finally:
        for chat in chats:
            await chat.aclose()


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=lambda p: f"{p[0]}-to-{p[1]}")
async def test_users_on_different_transports_chat_both_ways(pair, names):
    here, there = pair
    alice = await here.user(names("alice"))
    bob = await there.user(names("bob"))
    await alice.send([names("bob")], f"hello from {here.transport}")
    assert await receive_bodies(bob) == [f"hello from {here.transport}"]
    await bob.send([names("alice")], f"hello from {there.transport}")
    assert await receive_bodies(alice) == [f"hello from {there.transport}"]


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=lambda p: f"{p[0]}-and-{p[1]}")
async def test_one_user_on_both_transports_gets_every_message_on_both(pair, names):
    here, there = pair
    await here.user(names("bob"))
    bob_here, bob_there = await here.login(names("bob")), await there.login(names("bob"))
    alice = await there.user(names("alice"))
    for i in range(3):
        await alice.send([names("bob")], f"m{i}")
    expected = ["m0", "m1", "m2"]
    assert await receive_bodies(bob_here, 3) == expected
    assert await receive_bodies(bob_there, 3) == expected


@pytest.mark.parametrize("pair", PAIRS, indirect=True, ids=lambda p: f"{p[0]}-ends-{p[1]}")
async def test_delete_over_one_transport_ends_sessions_on_the_other(pair, names):
    here, there = pair
    await here.user(names("bob"))
    bob_here, bob_there = await here.login(names("bob")), await there.login(names("bob"))
    await bob_here.delete_account(names("bob"), "pw-secret-123")
    assert await closed_within(bob_there)
