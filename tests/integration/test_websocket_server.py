"""The websocket server and client in one process: what the contract's session rules look like
from a client (CONTRACT.md section 9), slow consumers, shutdown, and clients that vanish.

The server runs on the test's own loop around an in-memory ChatService, so a test can shorten
a timer or look at the server's connections.
"""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from core import ChatError, ChatService, HashCost, SessionClosed, SqliteStore
from core.throttle import LoginThrottle
from core.types import CloseReason, Delivery, MessagesDeleted, SentCopy
from tests.conftest import suite_guard
from transports.websocket import SUBPROTOCOL_V1, _server, open_client, start_server
from transports.websocket._server import WebSocketServer

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0
OFFER = [Subprotocol("wirechat.v1.json")]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[WebSocketServer]:
    service = ChatService(
        SqliteStore(":memory:"),
        hash_cost=HashCost.LOW,
        throttle=LoginThrottle(base=0.05, cap=0.2),
    )
    listener = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    try:
        yield listener
    finally:
        await service.shutdown()
        await listener.close()


async def until(condition: Callable[[], object], timeout: float = WAIT) -> None:
    """Poll (bounded) until ``condition()`` is true: the server's state has no event to wait on."""
    async with asyncio.timeout(timeout):
        while not condition():  # noqa: ASYNC110
            await asyncio.sleep(0.02)


async def test_shutdown_tells_every_client(server: WebSocketServer) -> None:
    alice = open_client(server.address)
    await alice.connect()
    await alice.signup("alice", "pw-secret-1")
    anonymous = open_client(server.address)
    await anonymous.connect()
    await server.service.shutdown()
    await server.close()
    await until(lambda: alice.closed_reason and anonymous.closed_reason)
    assert alice.closed_reason == CloseReason.SHUTDOWN.value
    assert anonymous.closed_reason == CloseReason.SHUTDOWN.value
    with pytest.raises(SessionClosed):
        await alice.send(["alice"], "hello?")
    await alice.close()
    await anonymous.close()


async def test_deletion_elsewhere_fails_a_waiting_request_and_ends_messages(
    server: WebSocketServer,
) -> None:
    phone, laptop = open_client(server.address), open_client(server.address)
    await phone.connect()
    await laptop.connect()
    await phone.signup("carol", "pw-secret-1")
    await laptop.login("carol", "pw-secret-1")
    await phone.delete_account("carol", "pw-secret-1")
    await until(lambda: laptop.closed_reason is not None)
    assert laptop.closed_reason == CloseReason.ACCOUNT_DELETED.value
    with pytest.raises(SessionClosed, match="deleted"):
        await laptop.list_accounts()
    async with asyncio.timeout(WAIT):
        assert [m async for m in laptop.messages()] == []
    await phone.close()
    await laptop.close()


async def test_a_client_that_stops_reading_is_dropped_and_loses_nothing(
    server: WebSocketServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "STALL_TIMEOUT", 1.0)
    sender = open_client(server.address)
    await sender.connect()
    await sender.signup("sender", "pw-secret-1")
    # A raw client with a small receive buffer that never reads after its signup.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(server.address)
    sock.setblocking(False)
    host, port = server.address
    slow = await connect(
        f"ws://{host}:{port}/chat",
        sock=sock,
        subprotocols=OFFER,
        compression=None,
        max_queue=1,
    )
    await slow.send(
        json.dumps({"id": 1, "op": "signup", "username": "slow", "password": "pw-secret-1"})
    )
    await until(lambda: server.service.live_sessions("slow") == 1)
    sent = 0
    body = "z" * 60_000
    for _ in range(600):  # ~36 MB at most; the server gives up far sooner
        if server.service.live_sessions("slow") == 0:
            break
        await sender.send(["slow"], f"{sent:04d}{body}")
        sent += 1
        await asyncio.sleep(0.01)
    assert server.service.live_sessions("slow") == 0, "the slow client was never dropped"
    slow.transport.abort()
    # Nothing was acknowledged, so everything is still pending, in order.
    again = open_client(server.address)
    await again.connect()
    assert (await again.login("slow", "pw-secret-1")).pending == sent
    got = [(await again.next_message(WAIT)).body[:4] for _ in range(sent)]
    assert got == [f"{i:04d}" for i in range(sent)]
    assert (await sender.send(["slow"], "still fine")).message_id > 0
    await sender.close()
    await again.close()


async def test_clients_that_vanish_leave_nothing_behind(server: WebSocketServer) -> None:
    host, port = server.address
    url = f"ws://{host}:{port}/chat"
    witness = open_client(server.address)
    await witness.connect()
    await witness.signup("witness", "pw-secret-1")
    for i in range(10):
        ws = await connect(url, subprotocols=OFFER, compression=None)
        signup = {"id": 1, "op": "signup", "username": f"ghost{i}", "password": "pw-secret-1"}
        await ws.send(json.dumps(signup))
        if i % 2:
            await ws.send(json.dumps({"id": 2, "op": "send", "to": ["witness"], "body": "boo"}))
        ws.transport.abort()  # gone in the middle of whatever the server was doing
    await until(lambda: len(server._connections) == 1)  # (only the witness)
    await until(lambda: all(server.service.live_sessions(f"ghost{i}") == 0 for i in range(10)))
    assert (await witness.send(["witness"], "alone")).message_id > 0
    pushes = 0
    async with asyncio.timeout(WAIT):
        async for message in witness.messages():
            pushes += 1
            if message.body == "alone":
                break
    assert pushes <= 6  # (a ghost's "boo" arrived only if its send was read before it vanished)
    await witness.close()
    await until(lambda: not server._connections)


async def test_logout_keeps_the_connection_for_another_login(server: WebSocketServer) -> None:
    client = open_client(server.address)
    await client.connect()
    await client.signup("dora", "pw-secret-1")
    await client.logout()
    await client.signup("erin", "pw-secret-1")
    friend = open_client(server.address)
    await friend.connect()
    await friend.signup("fred", "pw-secret-1")
    await friend.send(["dora", "erin"], "hi both")
    message = await client.next_message(WAIT)
    assert (message.sender, message.body) == ("fred", "hi both")
    assert (await client.list_accounts()).usernames == ("dora", "erin", "fred")
    await client.close()
    await friend.close()


async def test_a_v1_client_gets_messages_but_no_notices_and_no_history_ops(
    server: WebSocketServer,
) -> None:
    old = open_client(server.address, subprotocol=SUBPROTOCOL_V1)
    new = open_client(server.address)
    alice = open_client(server.address)
    for client in (old, new, alice):
        await client.connect()
    await alice.signup("alice", "pw-secret-1")
    await old.signup("bob", "pw-secret-1")
    await new.login("bob", "pw-secret-1")

    sent = await alice.send(["bob"], "one")
    mine = await old.send(["alice"], "from the old device")
    assert mine.conversation_id == 0  # (version 1's reply has none)
    await alice.delete_messages([sent.message_id], for_everyone=True)
    await alice.send(["bob"], "two")

    got = [await new.next_event(WAIT) for _ in range(4)]
    assert [type(e) for e in got] == [Delivery, SentCopy, MessagesDeleted, Delivery]
    one, two = got[0], got[3]
    assert isinstance(one, Delivery) and isinstance(two, Delivery)
    assert one.conversation_id == sent.conversation_id
    # The v1 device: both messages, as version 1 spells them, and nothing else, in order.
    events = [await old.next_event(WAIT) for _ in range(2)]
    assert events == [
        Delivery(sent.message_id, "alice", "one", one.sent_at_ms),
        Delivery(two.message_id, "alice", "two", two.sent_at_ms),
    ]
    with pytest.raises(ChatError, match=r"UNKNOWN_OP.*wirechat\.v2\.json"):
        await old.list_conversations()
    for client in (old, new, alice):
        await client.close()
