"""Bad input against a real websocket server process (Rule 18, CONTRACT.md sections 2, 9, 11).

Each case talks to the server with the ``websockets`` client and plain JSON written from
CONTRACT.md (not with the transport's own codec or client), on its own connection, and must get
the answer the contract names: an error reply on a connection that stays usable, or a close
code. Two witnesses logged in on the same server keep chatting after every case, so one bad
client visibly harms no other session.
"""

from __future__ import annotations

import asyncio
import json
import secrets
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
import pytest_asyncio
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.typing import Subprotocol

from core import ChatClient
from transports.websocket import open_client
from wirechat.launch import ServerProcess

pytestmark = [pytest.mark.asyncio(loop_scope="module"), pytest.mark.timeout(60)]
WAIT = 5.0
SUBPROTOCOL = "wirechat.v1.json"  # CONTRACT.md section 2
OFFER = [Subprotocol(SUBPROTOCOL)]
MAX_MESSAGE = 444_160  # CONTRACT.md section 5


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    proc = ServerProcess(["websocket"], tmp_path_factory.mktemp("ws-negative") / "db.sqlite")
    proc.start()
    try:
        yield proc
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def url(server: ServerProcess) -> str:
    host, port = server.addresses["websocket"]
    return f"ws://{host}:{port}/chat"


class Witnesses:
    """Two users on our own client who exchange a message after every case."""

    def __init__(self, address: tuple[str, int]) -> None:
        tag = secrets.token_hex(4)
        self.names = (f"alice_{tag}", f"bob_{tag}")
        self.alice: ChatClient = open_client(address)
        self.bob: ChatClient = open_client(address)
        self.count = 0

    async def start(self) -> None:
        for client, name in zip((self.alice, self.bob), self.names, strict=True):
            await client.connect()
            await client.signup(name, "pw-secret-123")

    async def still_chat(self) -> None:
        self.count += 1
        body = f"still here {self.count}"
        await self.alice.send([self.names[1]], body)
        assert (await self.bob.next_message(WAIT)).body == body
        await self.bob.send([self.names[0]], body)
        assert (await self.alice.next_message(WAIT)).body == body


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def witnesses(server: ServerProcess) -> AsyncIterator[Witnesses]:
    w = Witnesses(server.addresses["websocket"])
    await w.start()
    try:
        yield w
    finally:
        await w.alice.close()
        await w.bob.close()


@pytest_asyncio.fixture(loop_scope="module")
async def ws(url: str, witnesses: Witnesses) -> AsyncIterator[ClientConnection]:
    """A raw connection for one case; afterwards the witnesses must still chat."""
    async with connect(url, subprotocols=OFFER, compression=None) as conn:
        yield conn
    await witnesses.still_chat()


async def ask(ws: ClientConnection, message: str | bytes | dict[str, Any]) -> dict[str, Any]:
    """Send one message, return the next server message (a dict)."""
    await ws.send(json.dumps(message) if isinstance(message, dict) else message)
    async with asyncio.timeout(WAIT):
        reply = json.loads(await ws.recv())
    assert isinstance(reply, dict)
    return reply


async def closed_with(ws: ClientConnection) -> int | None:
    """Read until the server closes; the close code it sent."""
    async with asyncio.timeout(WAIT + 6):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code


def error(reply: dict[str, Any]) -> tuple[Any, str]:
    assert "error" in reply, reply
    assert reply["error"]["message"], "an error says what went wrong in words"
    return reply["id"], reply["error"]["code"]


async def still_open(ws: ClientConnection) -> None:
    """The connection is still usable: a request gets its reply."""
    assert error(await ask(ws, {"id": 99, "op": "list_accounts"})) == (99, "NOT_LOGGED_IN")


# -- section 11: messages the server cannot read ---------------------------------------------------
@pytest.mark.parametrize(
    "text", ["{", "not json", "", "[1,2]", "null", '{"id":1,"op":"send",}', "NaN"]
)
async def test_invalid_json_is_malformed_and_the_connection_stays(
    ws: ClientConnection, text: str
) -> None:
    assert error(await ask(ws, text)) == (None, "MALFORMED")
    await still_open(ws)


@pytest.mark.parametrize(
    "request_",
    [
        {"op": "logout"},
        {"id": "1", "op": "logout"},
        {"id": True, "op": "logout"},
        {"id": 1.5, "op": "logout"},
        {"id": -1, "op": "logout"},
        {"id": 2**53, "op": "logout"},
    ],
)
async def test_a_request_without_a_usable_id_is_malformed(
    ws: ClientConnection, request_: dict[str, Any]
) -> None:
    assert error(await ask(ws, request_)) == (None, "MALFORMED")
    await still_open(ws)


@pytest.mark.parametrize("op", ["shout", "", None, 5, "SEND", "Login"])
async def test_unknown_op(ws: ClientConnection, op: Any) -> None:
    request: dict[str, Any] = {"id": 7, "op": op}
    assert error(await ask(ws, request)) == (7, "UNKNOWN_OP")
    assert error(await ask(ws, {"id": 8})) == (8, "UNKNOWN_OP")  # no op at all
    await still_open(ws)


@pytest.mark.parametrize(
    "request_",
    [
        {"id": 3, "op": "signup", "username": "x"},
        {"id": 3, "op": "signup", "username": 5, "password": "x"},
        {"id": 3, "op": "login", "username": ["x"], "password": "x"},
        {"id": 3, "op": "send", "to": "bob", "body": "hi"},
        {"id": 3, "op": "send", "to": ["bob", 1], "body": "hi"},
        {"id": 3, "op": "send", "to": ["bob"], "body": None},
        {"id": 3, "op": "ack", "ids": [1, "2"]},
        {"id": 3, "op": "ack", "ids": 1},
        {"id": 3, "op": "list_accounts", "limit": "10"},
        {"id": 3, "op": "list_accounts", "limit": 1.0},
        {"id": 3, "op": "delete_account"},
    ],
)
async def test_wrong_types_are_malformed_and_end_nothing(
    ws: ClientConnection, request_: dict[str, Any]
) -> None:
    assert error(await ask(ws, request_)) == (3, "MALFORMED")
    await still_open(ws)  # (a malformed signup/login is no attempt: the session goes on)


async def test_a_lone_surrogate_is_refused(ws: ClientConnection, witnesses: Witnesses) -> None:
    signup = {
        "id": 1,
        "op": "signup",
        "username": f"s_{secrets.token_hex(4)}",
        "password": "pw-secret-1",
    }
    assert (await ask(ws, signup))["ok"]["pending"] == 0
    name = witnesses.names[0]
    text = f'{{"id":2,"op":"send","to":["{name}"],"body":"\\ud800"}}'
    assert error(await ask(ws, text)) == (2, "INVALID_ARGUMENT")


async def test_binary_frame_closes_1003(ws: ClientConnection) -> None:
    await ws.send(b'{"id":1,"op":"logout"}')
    assert await closed_with(ws) == 1003
    assert ws.close_reason and "text" in ws.close_reason


async def test_text_that_is_not_utf8_closes_1007(ws: ClientConnection) -> None:
    await ws.send(b'{"id":1,"op":"\xff"}', text=True)
    assert await closed_with(ws) == 1007


async def test_oversized_message_closes_1009(url: str, witnesses: Witnesses) -> None:
    async with connect(
        url,
        subprotocols=OFFER,
        compression=None,
        max_size=None,
    ) as ws:
        body = "x" * MAX_MESSAGE
        await ws.send(json.dumps({"id": 1, "op": "send", "to": ["a"], "body": body}))
        assert await closed_with(ws) == 1009
    await witnesses.still_chat()


async def test_the_largest_legitimate_message_is_read(ws: ClientConnection) -> None:
    # 64 KiB of control characters, each escaped as \u0001 (6 bytes): ~384 KiB of JSON, under
    # the limit; the server reads it and refuses the request for what it is (no login).
    text = json.dumps({"id": 4, "op": "send", "to": ["a"] * 256, "body": "\x01" * 65536})
    assert len(text) > 6 * 65536
    assert error(await ask(ws, text)) == (4, "NOT_LOGGED_IN")


# -- section 6: requests before login, a failed login -----------------------------------------
@pytest.mark.parametrize(
    "request_",
    [
        {"id": 5, "op": "send", "to": ["bob"], "body": "hi"},
        {"id": 5, "op": "list_accounts"},
        {"id": 5, "op": "logout"},
        {"id": 5, "op": "ack", "ids": [1]},
        {"id": 5, "op": "delete_account", "username": "bob"},
    ],
)
async def test_requests_before_login_get_not_logged_in(
    ws: ClientConnection, request_: dict[str, Any]
) -> None:
    assert error(await ask(ws, request_)) == (5, "NOT_LOGGED_IN")
    await still_open(ws)


async def test_a_failed_login_replies_then_closes_4001(ws: ClientConnection) -> None:
    nobody = f"nobody_{secrets.token_hex(4)}"
    await ws.send(json.dumps({"id": 1, "op": "login", "username": nobody, "password": "x"}))
    await ws.send(json.dumps({"id": 2, "op": "list_accounts"}))  # (pipelined behind it)
    received = []
    async with asyncio.timeout(WAIT + 6):
        with pytest.raises(ConnectionClosed):
            while True:
                received.append(json.loads(await ws.recv()))
    assert [error(r) for r in received] == [(1, "AUTH_FAILED")]  # and nothing for id 2
    assert ws.close_code == 4001


async def test_a_bad_signup_replies_then_closes_4001(ws: ClientConnection) -> None:
    reply = await ask(ws, {"id": 1, "op": "signup", "username": "no spaces", "password": "x"})
    assert error(reply) == (1, "INVALID_ARGUMENT")
    assert await closed_with(ws) == 4001


async def test_a_failed_ack_is_answered_with_its_id(ws: ClientConnection) -> None:
    signup = {
        "id": 1,
        "op": "signup",
        "username": f"k_{secrets.token_hex(4)}",
        "password": "pw-secret-1",
    }
    assert "ok" in await ask(ws, signup)
    await ws.send(json.dumps({"id": 2, "op": "ack", "ids": [1]}))  # (succeeds: no reply)
    reply = await ask(ws, {"id": 3, "op": "ack", "ids": list(range(1, 1026))})
    assert error(reply) == (3, "LIMIT_EXCEEDED")


# -- section 7: pipelining ----------------------------------------------------------------------
async def test_pipelined_requests_are_answered_in_order(
    ws: ClientConnection, witnesses: Witnesses
) -> None:
    signup = {
        "id": 0,
        "op": "signup",
        "username": f"p_{secrets.token_hex(4)}",
        "password": "pw-secret-1",
    }
    await ws.send(json.dumps(signup))
    for rid in range(1, 41):
        body = {"id": rid, "op": "send", "to": [witnesses.names[0]], "body": f"n{rid}"}
        await ws.send(json.dumps(body if rid % 5 else {"id": rid, "op": "nope"}))
    replies: list[dict[str, Any]] = []
    async with asyncio.timeout(WAIT):
        while len(replies) < 41:
            message = json.loads(await ws.recv())
            if "push" not in message:
                replies.append(message)
    assert [r["id"] for r in replies] == list(range(41))
    ids = [r["ok"]["message_id"] for r in replies[1:] if "ok" in r]
    assert ids == sorted(ids) and len(ids) == 32
    bodies = [(await witnesses.alice.next_message(WAIT)).body for _ in range(32)]
    assert bodies == [f"n{rid}" for rid in range(1, 41) if rid % 5]


# -- section 2: the handshake -----------------------------------------------------------------
@pytest.mark.parametrize("offered", [None, ["chat"], ["wirechat.v3.json", "json"]])
async def test_a_wrong_subprotocol_is_refused_in_words(url: str, offered: list[str] | None) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url, subprotocols=offered, compression=None)  # type: ignore[arg-type]
    assert refused.value.response.status_code == 400
    assert SUBPROTOCOL in refused.value.response.body.decode()


async def test_a_wrong_path_is_not_found(url: str) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await connect(url.replace("/chat", "/"), subprotocols=OFFER)
    assert refused.value.response.status_code == 404
    assert "/chat" in refused.value.response.body.decode()


async def test_plain_http_is_told_to_upgrade(server: ServerProcess) -> None:
    host, port = server.addresses["websocket"]
    reader, writer = await asyncio.open_connection(host, port)
    try:
        writer.write(f"GET /chat HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
        async with asyncio.timeout(WAIT):
            status = await reader.readline()
    finally:
        writer.close()
    assert status.startswith(b"HTTP/1.1 426")


async def test_our_client_reports_a_refused_upgrade_as_connection_error(url: str) -> None:
    host, port = url.removeprefix("ws://").removesuffix("/chat").rsplit(":", 1)
    client = open_client((host, int(port)))
    client.transport.uri = url.replace("/chat", "/elsewhere")  # type: ignore[attr-defined]
    with pytest.raises(ConnectionError, match=r"404|/chat"):
        await client.connect()


# -- rule 18: garbage does not hurt anyone ----------------------------------------------------
async def test_a_burst_of_garbage_is_answered_one_by_one(ws: ClientConnection) -> None:
    junk: list[str] = ["{}", "[]", '{"id":1}', '{"id":1,"op":"send","to":[[]],"body":1}']
    junk += [f'{{"id":{i},"op":"ack","ids":[{"9" * (i % 50 + 1)}]}}' for i in range(40)]
    junk += ['{"id":1' + "0" * 6000 + "}", "[" * 200_000 + "]" * 200_000]
    for text in junk:
        await ws.send(text)
    async with asyncio.timeout(WAIT):
        answers = [json.loads(await ws.recv()) for _ in junk]
    assert all("error" in a for a in answers)  # (an anonymous ack fails: NOT_LOGGED_IN)
    await still_open(ws)
