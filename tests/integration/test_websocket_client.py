"""Our websocket client against scripted servers: what it makes of each thing a server may send
(CONTRACT.md sections 3, 8, 9), including things a correct server never sends.

Each scripted server is a bare ``websockets`` server whose handler answers the client's first
request with the messages (and the close) the test gives it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.server import ServerConnection, serve
from websockets.typing import Subprotocol

from core import AuthFailed, ChatClient, ChatError, SessionClosed
from core.types import (
    CloseReason,
    Delivery,
    HistoryPage,
    MessagesDeleted,
    ReadMarker,
    SentCopy,
)
from transports.websocket import open_client

pytestmark = pytest.mark.timeout(30)
WAIT = 5.0
Script = Callable[[ServerConnection, dict[str, Any]], Awaitable[None]]


@pytest_asyncio.fixture
async def scripted() -> AsyncIterator[Callable[[Script], Awaitable[ChatClient]]]:
    """``await scripted(script)``: a connected client of a server that runs ``script(ws, first
    request)`` on the first request, then reads (and ignores) whatever else comes."""
    servers: list[Any] = []
    clients: list[ChatClient] = []

    async def start(script: Script) -> ChatClient:
        async def handler(ws: ServerConnection) -> None:
            first = json.loads(await ws.recv())
            await script(ws, first)
            async for _ in ws:
                pass

        server = await serve(
            handler, "127.0.0.1", 0, subprotocols=[Subprotocol("wirechat.v2.json")]
        )
        servers.append(server)
        client = open_client(("127.0.0.1", server.sockets[0].getsockname()[1]))
        await client.connect()
        clients.append(client)
        return client

    try:
        yield start
    finally:
        for client in clients:
            await client.close()
        for server in servers:
            server.close()
            await server.wait_closed()


def ok(request: dict[str, Any], **members: Any) -> str:
    return json.dumps({"id": request["id"], "ok": members})


async def test_an_unreadable_message_ends_the_connection(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send("this is not json")

    client = await scripted(script)
    with pytest.raises(ConnectionError, match="broke the contract"):
        await client.signup("alice", "pw-secret-1")
    assert client.closed_reason is not None and "contract" in client.closed_reason


async def test_a_binary_message_ends_the_connection(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="alice", pending=0).encode())

    client = await scripted(script)
    with pytest.raises(ConnectionError, match="binary"):
        await client.signup("alice", "pw-secret-1")


async def test_unknown_pushes_and_members_are_ignored(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(json.dumps({"push": "typing", "from": "bob"}))
        await ws.send(
            json.dumps({"id": request["id"], "ok": {"username": "a", "pending": 0, "x": 1}})
        )

    client = await scripted(script)
    assert (await client.signup("a", "pw-secret-1")).pending == 0


async def test_an_error_reply_raises_its_domain_error(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        error = {"code": "AUTH_FAILED", "message": "wrong username or password"}
        await ws.send(json.dumps({"id": request["id"], "error": error}))
        await ws.close(4001, CloseReason.AUTH_FAILED.value)

    client = await scripted(script)
    with pytest.raises(AuthFailed):
        await client.login("a", "pw-secret-1")
    with pytest.raises(SessionClosed):  # (Rule 4: a failed login ends the session)
        await client.login("a", "pw-secret-2")


async def test_an_unknown_error_code_fails_only_that_request(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="a", pending=0))
        first = json.loads(await ws.recv())
        error = {"code": "RATE_LIMITED", "message": "slow down"}
        await ws.send(json.dumps({"id": first["id"], "error": error}))
        second = json.loads(await ws.recv())
        await ws.send(ok(second, usernames=["a"], more=False))

    client = await scripted(script)
    await client.signup("a", "pw-secret-1")
    with pytest.raises(ChatError, match="RATE_LIMITED"):
        await client.list_accounts()
    assert (await client.list_accounts()).usernames == ("a",)


async def test_an_internal_error_is_a_connection_error(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        error = {"code": "INTERNAL", "message": "internal server error"}
        await ws.send(json.dumps({"id": request["id"], "error": error}))
        await ws.close(1011, "internal server error")

    client = await scripted(script)
    with pytest.raises(ConnectionError, match="server failed"):
        await client.signup("a", "pw-secret-1")


async def test_a_notice_fails_waiting_requests_and_ends_the_session(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="a", pending=0))
        await ws.recv()  # the send, never answered
        notice = {"push": "session_ended", "code": "SLOW_CONSUMER", "message": "too slow"}
        await ws.send(json.dumps(notice))
        await ws.close(4003, CloseReason.SLOW_CONSUMER.value)

    client = await scripted(script)
    await client.signup("a", "pw-secret-1")
    with pytest.raises(SessionClosed):
        await client.send(["b"], "hello?")
    assert client.closed_reason == CloseReason.SLOW_CONSUMER.value
    async with asyncio.timeout(WAIT):
        assert [m async for m in client.messages()] == []


async def test_a_close_code_without_a_notice_still_says_why(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.close(1001, "going away")

    client = await scripted(script)
    with pytest.raises(ConnectionError, match="shutting down"):
        await client.signup("a", "pw-secret-1")
    assert client.closed_reason == CloseReason.SHUTDOWN.value


async def test_a_failed_ack_is_only_logged(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="a", pending=0))
        ack = json.loads(await ws.recv())
        error = {"code": "NOT_LOGGED_IN", "message": "log in first"}
        await ws.send(json.dumps({"id": ack["id"], "error": error}))
        listing = json.loads(await ws.recv())
        await ws.send(ok(listing, usernames=[], more=False))

    client = await scripted(script)
    await client.signup("a", "pw-secret-1")
    await client.ack([1])  # (fire and forget: returns at once)
    assert (await client.list_accounts()).usernames == ()


async def test_notices_reach_events_in_order_with_deliveries(scripted: Any) -> None:
    message = {"message_id": 5, "from": "bob", "body": "hi", "sent_at": 1}
    pushes = [
        {"push": "deliver", **message, "conversation_id": 3, "participants": ["bob"]},
        {"push": "sent", **message, "from": "a", "conversation_id": 3, "participants": ["bob"]},
        {"push": "read", "conversation_id": 3, "up_to_id": 5, "unread": 0},
        {"push": "deleted", "ids": [5]},
    ]

    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="a", pending=0))
        for push in pushes:
            await ws.send(json.dumps(push))

    client = await scripted(script)
    await client.signup("a", "pw-secret-1")
    got = [await client.next_event(WAIT) for _ in pushes]
    assert got == [
        Delivery(5, "bob", "hi", 1, ("bob",), False, 3),
        SentCopy(Delivery(5, "a", "hi", 1, ("bob",), False, 3)),
        ReadMarker(3, 5, 0),
        MessagesDeleted((5,)),
    ]


async def test_a_history_page_names_its_conversation_in_every_message(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(ok(request, username="a", pending=0))
        asked = json.loads(await ws.recv())
        assert asked == {"id": asked["id"], "op": "read_history", "conversation_id": 3}
        messages = [
            {"message_id": 9, "from": "bob", "body": "b", "sent_at": 2, "sender_deleted": True},
            {"message_id": 4, "from": "a", "body": "a", "sent_at": 1},
        ]
        page = {"conversation_id": 3, "participants": ["bob"], "deleted_participants": ["bob"]}
        await ws.send(ok(asked, **page, read_up_to=4, messages=messages, more=False))

    client = await scripted(script)
    await client.signup("a", "pw-secret-1")
    assert await client.read_history(conversation_id=3) == HistoryPage(
        3,
        ("bob",),
        (
            Delivery(9, "bob", "b", 2, ("bob",), True, 3),
            Delivery(4, "a", "a", 1, ("bob",), False, 3),
        ),
        False,
        ("bob",),
        4,
    )


async def test_a_notice_that_breaks_the_contract_ends_the_connection(scripted: Any) -> None:
    async def script(ws: ServerConnection, request: dict[str, Any]) -> None:
        await ws.send(json.dumps({"push": "deleted", "ids": "all of them"}))

    client = await scripted(script)
    with pytest.raises(ConnectionError, match="broke the contract"):
        await client.signup("a", "pw-secret-1")
