"""Pipelined SENDs on the custom server (issue 10; PROTOCOL.md section 8): a connection's sends
that wait for the SQLite store's group commit are served together, yet replies come in request
order, messages are stored in request order, a failing send answers in its place, and a
session that ends with sends in flight loses no acknowledged message. Run on both codecs of
the custom server's drivers (custom and protobuf-tcp bodies)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio

from core import ChatService, DeletedSenderPolicy, HashCost, SqliteStore
from tests.integration.failing_commits import fail_groups_with_poison
from transports._guard import Guard, ServerLimits
from transports.custom import (
    NEED_DATA,
    Accounts,
    ConnectionClosed,
    Deleted,
    Error,
    ErrorCode,
    Hello,
    ListAccounts,
    LoggedOut,
    Logout,
    Ping,
    Pong,
    Role,
    Send,
    Sent,
    Signup,
    open_client,
    start_server,
)
from transports.custom import Connection as CustomCodec
from transports.custom._events import DeleteAccount
from transports.custom._server import CustomServer
from transports.custom._wire import LATEST_VERSION
from transports.protobuf_tcp._codec import Connection as ProtobufCodec

pytestmark = pytest.mark.timeout(60)
WAIT = 10.0
PASSWORD = "pw-secret-123"
CODECS = {"custom": CustomCodec, "protobuf-tcp": ProtobufCodec}


@pytest.fixture(params=sorted(CODECS))
def codec_name(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest_asyncio.fixture
async def service(tmp_path: Path) -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(tmp_path / "chat.db"), hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()


async def serve(
    service: ChatService, codec_name: str, limits: ServerLimits | None = None
) -> CustomServer:
    guard = Guard(limits) if limits is not None else None
    return await start_server(service, "127.0.0.1", 0, codec=CODECS[codec_name], guard=guard)


class Raw:
    """A logged-in connection driven frame by frame: pipelines go out in one write."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, codec: Any):
        self.reader, self.writer, self.codec = reader, writer, codec

    @classmethod
    async def signup(cls, server: CustomServer, codec_name: str, name: str) -> Raw:
        reader, writer = await asyncio.open_connection(*server.address)
        raw = cls(reader, writer, CODECS[codec_name](Role.CLIENT))
        raw.write([Hello(1, LATEST_VERSION), Signup(1, name, PASSWORD)])
        await raw.read(2)  # WELCOME, SIGNED_UP
        return raw

    def write(self, events: list[Any]) -> None:
        self.writer.write(b"".join(self.codec.send(e) for e in events))

    async def read(self, count: int | None = None) -> list[Any]:
        """The next ``count`` frames (None: every frame until the server closes)."""
        events: list[Any] = []
        async with asyncio.timeout(WAIT):
            while count is None or len(events) < count:
                try:
                    data = await self.reader.read(65536)
                except ConnectionResetError:
                    data = b""
                self.codec.receive_data(data)
                while (event := self.codec.next_event()) is not NEED_DATA:
                    if isinstance(event, ConnectionClosed):
                        assert count is None, f"closed after {events!r}"
                        self.writer.close()
                        return events
                    events.append(event)
        return events


@contextlib.asynccontextmanager
async def bob_and_alice(
    service: ChatService, codec_name: str, limits: ServerLimits | None = None
) -> AsyncIterator[tuple[CustomServer, Raw]]:
    """A server with "bob" signed up (his connection left idle: he finds his messages
    pending later) and "alice" signed up on a raw connection; the server closed afterwards."""
    server = await serve(service, codec_name, limits)
    try:
        await (await Raw.signup(server, codec_name, "bob")).writer.drain()
        yield server, await Raw.signup(server, codec_name, "alice")
    finally:
        await server.close()


async def pending_bodies(server: CustomServer, codec_name: str, name: str) -> list[str]:
    """What ``name`` finds pending at its login, in the order it is delivered."""
    async with open_client(server.address, codec=CODECS[codec_name]) as client:
        pending = (await client.login(name, PASSWORD)).pending
        return [(await client.next_message(WAIT)).body for _ in range(pending)]


async def test_replies_and_stored_messages_keep_request_order(
    service: ChatService, codec_name: str
) -> None:
    async with bob_and_alice(service, codec_name) as (server, alice):
        commits = service.store.commits  # type: ignore[attr-defined]
        requests: list[Any] = []
        bodies: list[str] = []
        for i in range(40):  # sends, with other requests between them
            rid = len(requests) + 2
            if i % 9 == 4:
                requests.append(Ping(rid, b"p"))
            elif i % 9 == 7:
                requests.append(ListAccounts(rid, "*"))
            else:
                bodies.append(f"m{i}")
                requests.append(Send(rid, ("bob",), bodies[-1]))
        alice.write(requests)
        replies = await alice.read(len(requests))

        assert [r.request_id for r in replies] == [q.request_id for q in requests]
        kinds = {Send: Sent, Ping: Pong, ListAccounts: Accounts}
        assert [type(r) for r in replies] == [kinds[type(q)] for q in requests]
        ids = [r.message_id for r in replies if isinstance(r, Sent)]
        assert ids == sorted(ids) and len(set(ids)) == len(ids)  # stored in request order
        # The sends of this one connection shared transactions (before, one each).
        assert service.store.commits - commits < len(bodies) // 2  # type: ignore[attr-defined]
        assert await pending_bodies(server, codec_name, "bob") == bodies


async def test_a_failing_send_answers_in_its_place_and_the_rest_go_on(
    service: ChatService, codec_name: str
) -> None:
    async with bob_and_alice(service, codec_name) as (server, alice):
        sends = [Send(i + 2, ("bob",), f"m{i}") for i in range(12)]
        sends[5] = Send(7, ("bob", "bob"), "twice")  # a request-level error (Rule 8)
        alice.write(sends)
        replies = await alice.read(len(sends))

        assert [r.request_id for r in replies] == [s.request_id for s in sends]
        assert isinstance(replies[5], Error) and replies[5].code == ErrorCode.INVALID_ARGUMENT
        assert all(isinstance(r, Sent) for i, r in enumerate(replies) if i != 5)
        expected = [s.body for i, s in enumerate(sends) if i != 5]
        assert await pending_bodies(server, codec_name, "bob") == expected


async def test_a_failed_commit_ends_the_connection_after_the_replies_before_it(
    service: ChatService, codec_name: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    fail_groups_with_poison(monkeypatch)
    async with bob_and_alice(service, codec_name) as (server, alice):
        first = [Send(i + 2, ("bob",), f"a{i}") for i in range(5)]
        alice.write(first)
        assert all(isinstance(r, Sent) for r in await alice.read(len(first)))
        second = [Send(i + 10, ("bob",), "poison" if i == 4 else f"b{i}") for i in range(10)]
        alice.write(second)
        events = await alice.read()  # until the server closes

        *answered, last = events
        assert (type(last), last.request_id, last.code) == (Error, 0, ErrorCode.INTERNAL)
        assert all(isinstance(e, Sent) for e in answered)  # a prefix, in request order
        assert [e.request_id for e in answered] == [s.request_id for s in second][: len(answered)]
        acknowledged = [s.body for s in first] + [s.body for s in second][: len(answered)]
        stored = await pending_bodies(server, codec_name, "bob")
        assert "poison" not in stored
        assert stored[: len(acknowledged)] == acknowledged  # every acknowledged one, in order


@pytest.mark.parametrize("ending", ["logout", "half-close"])
async def test_the_session_ends_with_sends_in_flight_answered_and_stored(
    service: ChatService, codec_name: str, ending: str
) -> None:
    async with bob_and_alice(service, codec_name) as (server, alice):
        sends = [Send(i + 2, ("bob",), f"m{i}") for i in range(20)]
        if ending == "logout":
            alice.write([*sends, Logout(30)])
            replies = await alice.read(len(sends) + 1)
            assert isinstance(replies[-1], LoggedOut)
            replies = replies[:-1]
        else:  # the client sends nothing more but reads on (a TCP half-close)
            alice.write(sends)
            alice.writer.write_eof()
            replies = await alice.read()
        assert [r.request_id for r in replies] == [s.request_id for s in sends]
        assert all(isinstance(r, Sent) for r in replies)
        assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends]


async def test_deleting_the_account_answers_the_sends_before_it(
    tmp_path: Path, codec_name: str
) -> None:
    service = ChatService(
        SqliteStore(tmp_path / "keep.db"),
        hash_cost=HashCost.LOW,
        deleted_sender=DeletedSenderPolicy.KEEP,  # (else Rule 15 deletes them with alice)
    )
    try:
        async with bob_and_alice(service, codec_name) as (server, alice):
            sends = [Send(i + 2, ("bob",), f"m{i}") for i in range(20)]
            alice.write([*sends, DeleteAccount(30, "alice", PASSWORD)])
            events = await alice.read()
            assert [type(e) for e in events] == [Sent] * len(sends) + [Deleted]
            assert [e.request_id for e in events] == [s.request_id for s in sends] + [30]
            assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends]
    finally:
        await service.shutdown()


async def test_a_vanished_client_leaves_a_prefix_and_no_bytes_held(
    service: ChatService, codec_name: str
) -> None:
    server = await serve(service, codec_name)
    try:
        await (await Raw.signup(server, codec_name, "bob")).writer.drain()
        for round_ in range(5):
            alice = await Raw.signup(server, codec_name, f"alice{round_}")
            sends = [Send(i + 2, ("bob",), f"r{round_}-{i}") for i in range(30)]
            alice.write(sends)
            await alice.writer.drain()
            alice.writer.transport.abort()  # gone with its sends in flight
        async with asyncio.timeout(WAIT):
            while server.guard.connections > 0:  # noqa: ASYNC110 - no event to wait on
                await asyncio.sleep(0.02)
        assert server.guard.inbound == 0
        stored = await pending_bodies(server, codec_name, "bob")
        for round_ in range(5):  # whatever was stored of each is a prefix, in order
            mine = [b for b in stored if b.startswith(f"r{round_}-")]
            assert mine == [f"r{round_}-{i}" for i in range(len(mine))]
    finally:
        await server.close()


@pytest.mark.parametrize(
    "limits",
    [ServerLimits(send_bytes_in_flight=64 * 1024), ServerLimits(sends_in_flight=2)],
    ids=["bytes", "count"],
)
async def test_bounded_pipelines_keep_order_and_give_their_bytes_back(
    service: ChatService, codec_name: str, limits: ServerLimits
) -> None:
    async with bob_and_alice(service, codec_name, limits) as (server, alice):
        sends = [Send(i + 2, ("bob",), f"{i:04d}" + "x" * 20_000) for i in range(24)]
        alice.write([*sends, Ping(40)])
        replies = await alice.read(len(sends) + 1)
        assert [r.request_id for r in replies] == [s.request_id for s in sends] + [40]
        assert all(isinstance(r, Sent) for r in replies[:-1])
        assert server.guard.inbound == 0  # (what the pipeline counted is given back)
        assert await pending_bodies(server, codec_name, "bob") == [s.body for s in sends]
