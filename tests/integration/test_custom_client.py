"""The custom ChatClient against scripted servers: request ids, pipelining, and what happens
when the server misbehaves or goes away. The scripted server speaks through the codec, so each
test states exactly what goes over the wire."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator, Callable

import pytest
import pytest_asyncio

from core import InvalidArgument, LimitExceeded, NotLoggedIn, SessionClosed
from core.types import CloseReason
from transports.custom import (
    NEED_DATA,
    Ack,
    Connection,
    ConnectionClosed,
    Deliver,
    Error,
    ErrorCode,
    Hello,
    LoggedIn,
    Login,
    Ping,
    Pong,
    Role,
    Send,
    Sent,
    Welcome,
    open_client,
)
from transports.custom._wire import MAX_FRAME

pytestmark = pytest.mark.timeout(30)
WAIT = 5.0
WELCOME = Welcome(1, MAX_FRAME, 65536, 256)

Script = Callable[["FakeServer", object], None]


class FakeServer:
    """Accepts one client, answers HELLO with WELCOME (unless told otherwise), records every
    event it receives and lets ``script`` answer the rest (by calling ``reply``)."""

    def __init__(self, script: Script | None = None, *, welcome: object = WELCOME) -> None:
        self.script = script
        self.welcome = welcome
        self.received: list[object] = []
        self.got_event = asyncio.Condition()
        self.codec = Connection(Role.SERVER)
        self.writer: asyncio.StreamWriter | None = None
        self.address: tuple[str, int] = ("", 0)
        self._server: asyncio.Server | None = None

    async def start(self) -> FakeServer:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.address = self._server.sockets[0].getsockname()[:2]
        return self

    async def stop(self) -> None:
        if self.writer is not None:
            self.writer.close()
        assert self._server is not None
        self._server.close()

    def reply(self, event: object) -> None:
        assert self.writer is not None
        self.writer.write(self.codec.send(event))

    def hang_up(self) -> None:
        assert self.writer is not None
        self.writer.transport.abort()

    async def wait_for(self, count: int) -> list[object]:
        """The first ``count`` events after HELLO, once they have arrived."""
        async with asyncio.timeout(WAIT), self.got_event:
            await self.got_event.wait_for(lambda: len(self.received) >= count)
        return self.received[:count]

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.writer = writer
        while data := await reader.read(65536):
            self.codec.receive_data(data)
            while (event := self.codec.next_event()) is not NEED_DATA:
                if isinstance(event, ConnectionClosed):
                    return
                if isinstance(event, Hello):
                    self.reply(self.welcome)
                    continue
                async with self.got_event:
                    self.received.append(event)
                    self.got_event.notify_all()
                if self.script is not None:
                    self.script(self, event)


def echo_pings(server: FakeServer, event: object) -> None:
    if isinstance(event, Ping):
        server.reply(Pong(event.request_id, event.payload))


@pytest_asyncio.fixture
async def fake() -> AsyncIterator[Callable[..., FakeServer]]:
    servers: list[FakeServer] = []

    def make(script: Script | None = None, **kw: object) -> FakeServer:
        server = FakeServer(script, **kw)
        servers.append(server)
        return server

    yield make
    for server in servers:
        await server.stop()


async def test_sequential_requests_reuse_request_id_1(fake) -> None:
    server = await fake(echo_pings).start()
    async with open_client(server.address) as client:
        assert client.transport.welcome == WELCOME  # a tool's extra, beside ChatClient
        for i in range(5):
            assert await client.transport.ping(b"%d" % i) == b"%d" % i
    assert [e.request_id for e in server.received] == [1] * 5


async def test_pipelined_requests_get_their_own_answers(fake) -> None:
    answered: list[Ping] = []

    def answer_in_reverse_batches(server: FakeServer, event: object) -> None:
        if len(server.received) > 40:
            return echo_pings(server, event)
        answered.append(event)
        if len(answered) == 20:  # answer out of order: responses pair by id, not position
            for ping in reversed(answered):
                server.reply(Pong(ping.request_id, ping.payload))
            answered.clear()

    server = await fake(answer_in_reverse_batches).start()
    async with open_client(server.address) as client:
        payloads = [b"p%d" % i for i in range(40)]
        assert await asyncio.gather(*(client.transport.ping(p) for p in payloads)) == payloads
        assert sorted(e.request_id for e in server.received) == list(range(1, 41))
        assert await client.transport.ping(b"after") == b"after"  # every id is free again: 1
    assert server.received[-1].request_id == 1


async def test_an_abandoned_request_keeps_its_id_until_answered(fake) -> None:
    server = await fake().start()
    async with open_client(server.address) as client:
        first = asyncio.create_task(client.transport.ping(b"first"))
        await server.wait_for(1)
        first.cancel()
        second = asyncio.create_task(client.transport.ping(b"second"))
        ping1, ping2 = await server.wait_for(2)
        assert (ping1.request_id, ping2.request_id) == (1, 2)  # 1 is still in flight
        server.reply(Pong(1, b"first"))  # the late answer must not reach the second call
        server.reply(Pong(2, b"second"))
        assert await second == b"second"
        third = asyncio.create_task(client.transport.ping(b"third"))
        assert (await server.wait_for(3))[2].request_id == 1
        server.reply(Pong(1, b"third"))
        assert await third == b"third"


async def test_connection_loss_fails_pending_calls_and_ends_messages(fake) -> None:
    server = await fake().start()
    client = open_client(server.address)
    await client.connect()
    calls = [asyncio.create_task(client.transport.ping(b"%d" % i)) for i in range(3)]
    await server.wait_for(3)
    server.hang_up()
    for call in calls:
        with pytest.raises(ConnectionError):
            await call
    async with asyncio.timeout(WAIT):
        async for _ in client.messages():
            pass
    assert client.closed_reason is not None
    with pytest.raises(ConnectionError):
        await client.transport.ping()
    with pytest.raises(ConnectionError):
        await client.list_accounts()
    await client.close()


async def test_session_end_notice(fake) -> None:
    def script(server: FakeServer, event: object) -> None:
        if isinstance(event, Login):
            server.reply(LoggedIn(event.request_id, 1))
            server.reply(Deliver(7, 1_760_000_000_000, "bob", "hi"))
            server.reply(Error(0, ErrorCode.ACCOUNT_DELETED, CloseReason.ACCOUNT_DELETED.value))
            server.hang_up()

    server = await fake(script).start()
    async with open_client(server.address, auto_ack=False) as client:
        assert (await client.login("alice", "pw")).pending == 1
        received = [m.body async for m in client.messages()]
        assert received == ["hi"]
        assert client.closed_reason == CloseReason.ACCOUNT_DELETED.value
        with pytest.raises(SessionClosed):
            await client.send(["bob"], "are you there?")


async def test_unsupported_version_fails_connect(fake) -> None:
    refusal = Error(0, ErrorCode.UNSUPPORTED_VERSION, "this server speaks 2")
    server = await fake(welcome=refusal).start()
    client = open_client(server.address)
    with pytest.raises(ConnectionError, match="UNSUPPORTED_VERSION"):
        await client.connect()


async def test_a_reply_to_no_request_closes_the_connection(fake) -> None:
    def script(server: FakeServer, event: object) -> None:
        server.reply(Pong(event.request_id + 100, b"?"))

    server = await fake(script).start()
    async with open_client(server.address) as client:
        with pytest.raises(ConnectionError):
            await client.transport.ping(b"x")


async def test_a_failed_ack_is_not_fatal(fake) -> None:
    def script(server: FakeServer, event: object) -> None:
        if isinstance(event, Login):
            server.reply(LoggedIn(event.request_id, 0))
        elif isinstance(event, Ack):
            server.reply(Error(0, ErrorCode.NOT_LOGGED_IN, "log in first"))
        else:
            echo_pings(server, event)

    server = await fake(script).start()
    async with open_client(server.address) as client:
        await client.login("alice", "pw")
        await client.ack([9, 3, 3, 5])
        assert await client.transport.ping(b"ok") == b"ok"
        assert server.received[1] == Ack((3, 5, 9))  # sorted, deduplicated


async def test_requests_the_wire_cannot_carry_fail_locally(fake) -> None:
    def script(server: FakeServer, event: object) -> None:
        if isinstance(event, Login):
            server.reply(LoggedIn(event.request_id, 0))
        elif isinstance(event, Send):
            server.reply(Sent(event.request_id, 1, 2))

    server = await fake(script).start()
    async with open_client(server.address) as client:
        with pytest.raises(NotLoggedIn):
            await client.ack([1])
        await client.login("alice", "pw")
        with pytest.raises(InvalidArgument):
            await client.send([], "to no one")
        with pytest.raises(LimitExceeded):
            await client.send([f"u{i}" for i in range(257)], "to a crowd")
        with pytest.raises(LimitExceeded):
            await client.send(["bob"], "x" * MAX_FRAME)
        with pytest.raises(LimitExceeded):
            await client.ack(range(1, 1026))
        with pytest.raises(InvalidArgument):
            await client.list_accounts(limit=-1)
        assert (await client.send(["bob"], "fine")).message_id == 1
    assert [type(e).__name__ for e in server.received] == ["Login", "Send"]


async def test_requests_wait_while_the_server_does_not_read(fake) -> None:
    """Far more than the client's write buffer holds, to a server that starts reading late:
    the callers wait (backpressure) and every call then gets its own answer."""
    server = fake(echo_pings)
    serve = server._serve

    async def late_reader(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 65536)
        server.writer = writer
        while (event := server.codec.next_event()) is NEED_DATA:
            server.codec.receive_data(await reader.read(65536))
        assert isinstance(event, Hello)
        server.reply(server.welcome)
        await asyncio.sleep(0.3)  # meanwhile the client fills every buffer
        await serve(reader, writer)

    server._serve = late_reader  # type: ignore[method-assign]
    await server.start()
    async with open_client(server.address) as client:
        payloads = [bytes([i]) * 60_000 for i in range(100)]  # 6 MB
        async with asyncio.timeout(WAIT * 2):
            assert await asyncio.gather(*(client.transport.ping(p) for p in payloads)) == payloads
