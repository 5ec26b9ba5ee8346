"""Issue 13 on the websocket wire (CONTRACT.md version 2.1, sections 6.18, 6.19 and 14), with
clients written from the contract alone (``websockets`` and ``json``), against an in-process
server so that the sessions can be watched: resume, change_password, delete_account with its
password, and what a client from before version 2.1 (or a version-1 connection) sees.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed
from websockets.typing import Subprotocol

from core import ChatService, HashCost, SqliteStore
from tests.conftest import suite_guard
from transports.websocket import start_server
from transports.websocket._server import WebSocketServer

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0
PASSWORD = "pw-secret-1"
NEW_PASSWORD = "pw-secret-2"


def name() -> str:
    return "w" + uuid.uuid4().hex[:12]


@pytest_asyncio.fixture
async def server() -> AsyncIterator[WebSocketServer]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    listener = await start_server(service, "127.0.0.1", 0, guard=suite_guard())
    try:
        yield listener
    finally:
        await service.shutdown()
        await listener.close()


class Raw:
    """A contract-only client: requests with ids, replies by id, pushes kept aside."""

    def __init__(self, ws: ClientConnection) -> None:
        self.ws = ws
        self.next_id = 1
        self.pushes: list[dict[str, Any]] = []

    @classmethod
    async def open(cls, server: WebSocketServer, version: int = 2) -> Raw:
        host, port = server.address
        protocol = Subprotocol(f"wirechat.v{version}.json")
        ws = await connect(f"ws://{host}:{port}/chat", subprotocols=[protocol])
        assert ws.subprotocol == protocol
        return cls(ws)

    async def call(self, op: str, **members: Any) -> dict[str, Any]:
        rid, self.next_id = self.next_id, self.next_id + 1
        await self.ws.send(json.dumps({"id": rid, "op": op, **members}))
        while True:
            message = await self.receive()
            if "push" in message:
                self.pushes.append(message)
                continue
            assert message["id"] == rid
            return message

    async def receive(self) -> dict[str, Any]:
        async with asyncio.timeout(WAIT):
            message = json.loads(await self.ws.recv())
        assert isinstance(message, dict)
        return message

    async def closed(self) -> tuple[int | None, list[dict[str, Any]]]:
        """Read to the close: its code, and the messages that came before it."""
        seen = list(self.pushes)
        try:
            for _ in range(100):  # (bounded)
                seen.append(await self.receive())
        except ConnectionClosed:
            return self.ws.close_code, seen
        raise AssertionError("the server did not close")


def error(reply: dict[str, Any]) -> str:
    assert "error" in reply, reply
    return str(reply["error"]["code"])


async def test_login_carries_a_resume_token_that_logs_in_again(server: WebSocketServer) -> None:
    me, friend = name(), name()
    first = await Raw.open(server)
    signed = (await first.call("signup", username=me, password=PASSWORD))["ok"]
    token = signed["resume_token"]
    assert len(token) == 43 and signed == {"username": me, "pending": 0, "resume_token": token}
    await first.ws.close()  # the connection is lost

    other = await Raw.open(server)
    await other.call("signup", username=friend, password=PASSWORD)
    await other.call("send", to=[me], body="while you were away")

    again = await Raw.open(server)
    assert (await again.call("resume", token=token)) == {
        "id": 1,
        "ok": {"username": me, "pending": 1, "resume_token": token},
    }
    deliver = await again.receive()
    assert (deliver["push"], deliver["from"], deliver["body"]) == (
        "deliver",
        friend,
        "while you were away",
    )
    # Resume on a logged-in connection: refused as a login would be, the session goes on.
    assert error(await again.call("resume", token=token)) == "ALREADY_LOGGED_IN"
    assert "ok" in await again.call("list_accounts")


async def test_a_refused_resume_closes_with_4001(server: WebSocketServer) -> None:
    me = name()
    client = await Raw.open(server)
    token = (await client.call("signup", username=me, password=PASSWORD))["ok"]["resume_token"]
    assert (await client.call("logout")) == {"id": 2, "ok": {}}  # revokes the token

    for attempt in (token, "not-a-token"):
        stranger = await Raw.open(server)
        reply = await stranger.call("resume", token=attempt)
        assert error(reply) == "RESUME_REFUSED"
        assert "log in with your password" in reply["error"]["message"]
        assert (await stranger.closed())[0] == 4001
    bad = await Raw.open(server)
    assert error(await bad.call("resume")) == "MALFORMED"  # no token member: not an attempt
    assert error(await bad.call("resume", token=5)) == "MALFORMED"


async def test_change_password_ends_the_other_connections_with_4004(
    server: WebSocketServer,
) -> None:
    me = name()
    here, there, old = await Raw.open(server), await Raw.open(server), await Raw.open(server, 1)
    first = (await here.call("signup", username=me, password=PASSWORD))["ok"]["resume_token"]
    await there.call("login", username=me, password=PASSWORD)
    assert (await old.call("login", username=me, password=PASSWORD))["ok"] == {
        "username": me,
        "pending": 0,
    }  # (version 1: no resume_token)

    wrong = await here.call("change_password", old_password="wrong-one", new_password=NEW_PASSWORD)
    assert error(wrong) == "AUTH_FAILED"
    weak = await here.call("change_password", old_password=PASSWORD, new_password="qwertyuiop")
    assert error(weak) == "WEAK_PASSWORD" and "common" in weak["error"]["message"]
    assert server.service.live_sessions(me) == 3

    changed = await here.call(
        "change_password", old_password=PASSWORD, new_password=NEW_PASSWORD
    )  # end_other_sessions left out: true
    assert changed["ok"]["sessions_ended"] == 2
    new_token = changed["ok"]["resume_token"]
    assert len(new_token) == 43 and new_token != first
    notice = {
        "push": "session_ended",
        "code": "PASSWORD_CHANGED",
        "message": "the password was changed in another session",
    }
    for ended in (there, old):  # a version-1 connection is told as well
        assert await ended.closed() == (4004, [notice])
    assert "ok" in await here.call("list_accounts")  # this one goes on

    refused = await Raw.open(server)
    assert error(await refused.call("resume", token=first)) == "RESUME_REFUSED"
    resumed = await Raw.open(server)
    assert (await resumed.call("resume", token=new_token))["ok"]["username"] == me


async def test_change_password_may_keep_the_other_sessions(server: WebSocketServer) -> None:
    me = name()
    here, there = await Raw.open(server), await Raw.open(server)
    await here.call("signup", username=me, password=PASSWORD)
    await there.call("login", username=me, password=PASSWORD)
    changed = await here.call(
        "change_password",
        old_password=PASSWORD,
        new_password=NEW_PASSWORD,
        end_other_sessions=False,
    )
    assert changed["ok"]["sessions_ended"] == 0
    assert "ok" in await there.call("list_accounts")


async def test_delete_account_needs_the_password_old_clients_included(
    server: WebSocketServer,
) -> None:
    me = name()
    new, old = await Raw.open(server), await Raw.open(server, 1)
    await new.call("signup", username=me, password=PASSWORD)
    await old.call("login", username=me, password=PASSWORD)
    # A client from before version 2.1 sends no password, on either version.
    for client in (old, new):
        reply = await client.call("delete_account", username=me)
        assert reply["error"] == {
            "code": "AUTH_FAILED",
            "message": "deleting an account now needs your password; update your client",
        }
    wrong = await new.call("delete_account", username=me, password="wrong-one")
    assert error(wrong) == "AUTH_FAILED"
    assert server.service.live_sessions(me) == 2  # nothing deleted, nobody logged out
    # The update is one member, which a version-1 connection may send too.
    assert (await old.call("delete_account", username=me, password=PASSWORD))["ok"] == {}
    assert (await old.closed())[0] == 4002
    code, seen = await new.closed()
    assert code == 4002 and seen[-1]["code"] == "ACCOUNT_DELETED"


async def test_a_version_1_connection_sees_none_of_version_2_1(server: WebSocketServer) -> None:
    me = name()
    old = await Raw.open(server, 1)
    assert (await old.call("signup", username=me, password=PASSWORD))["ok"] == {
        "username": me,
        "pending": 0,
    }
    for op, members in (
        ("resume", {"token": "x"}),
        ("change_password", {"old_password": PASSWORD, "new_password": NEW_PASSWORD}),
    ):
        reply = await old.call(op, **members)
        assert error(reply) == "UNKNOWN_OP" and "wirechat.v2.json" in reply["error"]["message"]
    weak = await Raw.open(server, 1)
    assert error(await weak.call("signup", username=name(), password="pw")) == "WEAK_PASSWORD"
    assert (await weak.closed())[0] == 4001
