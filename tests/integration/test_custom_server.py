"""The custom server's own duties, in-process so the timing knobs can be turned down:
the HELLO deadline (slowloris), slow consumers, shutdown, and no task left behind."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio

from core import ChatService, CloseReason, HashCost, SessionClosed, SqliteStore
from transports.custom import (
    NEED_DATA,
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
    SignedUp,
    Signup,
    Welcome,
    _server,
    open_client,
    start_server,
)
from transports.custom._server import CustomServer

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0


@pytest_asyncio.fixture
async def service() -> AsyncIterator[ChatService]:
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    yield service
    await service.shutdown()


@pytest_asyncio.fixture
async def server(service: ChatService) -> AsyncIterator[CustomServer]:
    server = await start_server(service, "127.0.0.1", 0, handshake_timeout=0.5)
    yield server
    await server.close()


async def read_until_closed(
    reader: asyncio.StreamReader,
    writer: asyncio.StreamWriter,
    codec: Connection | None = None,
) -> list[object]:
    """Every event the server sent until it closed (a reset counts as closed); then close.
    ``codec``: the client side's codec, if the connection has already been read from."""
    if codec is None:
        codec = Connection(Role.CLIENT)
        codec.send(Hello())
    events: list[object] = []
    async with asyncio.timeout(WAIT):
        while True:
            try:
                data = await reader.read(65536)
            except ConnectionResetError:
                data = b""
            codec.receive_data(data)
            while (event := codec.next_event()) is not NEED_DATA:
                if isinstance(event, ConnectionClosed):
                    writer.close()
                    return events
                events.append(event)


async def test_a_client_that_never_completes_hello_is_closed(server: CustomServer) -> None:
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(Connection(Role.CLIENT).send(Hello())[:3])  # a slowloris: part of HELLO
    events = await read_until_closed(reader, writer)
    assert [(e.request_id, e.code) for e in events] == [(0, ErrorCode.BAD_HANDSHAKE)]


async def test_slow_consumer_is_disconnected_and_keeps_its_messages(
    service: ChatService, server: CustomServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "STALL_TIMEOUT", 0.3)
    monkeypatch.setattr(_server, "STALL_CHECK", 0.05)
    # The slow one: logged in, then reads nothing; a small receive buffer fills fast.
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, server.address)
    reader, writer = await asyncio.open_connection(sock=sock)
    codec = Connection(Role.CLIENT)
    writer.write(codec.send(Hello()) + codec.send(Signup(1, "slow", "pw-secret-123")))
    greeting: list[object] = []
    async with asyncio.timeout(WAIT):
        while len(greeting) < 2:  # WELCOME, SIGNED_UP; from here on it reads nothing
            codec.receive_data(await reader.read(100))
            while (event := codec.next_event()) is not NEED_DATA:
                greeting.append(event)
    async with open_client(server.address) as fast:
        await fast.signup("fast", "pw-secret-123")
        sent = 0
        body = "x" * 60_000
        async with asyncio.timeout(WAIT * 4):
            while service.live_sessions("slow") and sent < 2000:
                await fast.send(["slow"], body)
                sent += 1
        assert service.live_sessions("slow") == 0, "never declared a slow consumer"

        events = await read_until_closed(reader, writer, codec)  # now read all that was sent
        assert isinstance(events[-1], Error)
        assert (events[-1].request_id, events[-1].code) == (0, ErrorCode.SLOW_CONSUMER)
        delivered = [e for e in events if isinstance(e, Deliver)]
        assert len(delivered) < sent
        # Nothing was acked, so everything is still pending (Rule 17).
        async with open_client(server.address) as again:
            assert (await again.login("slow", "pw-secret-123")).pending == sent
        await fast.send(["fast"], "still fine")
        assert (await fast.next_message(WAIT)).body == "still fine"


async def test_shutdown_tells_every_client(service: ChatService) -> None:
    server = await start_server(service, "127.0.0.1", 0)
    client = open_client(server.address)
    await client.connect()
    await client.signup("alice", "pw-secret-123")
    reader, writer = await asyncio.open_connection(*server.address)
    writer.write(Connection(Role.CLIENT).send(Hello()))  # anonymous, past the handshake
    await reader.read(100)  # WELCOME
    anonymous = asyncio.create_task(read_until_closed(reader, writer))

    await service.shutdown()  # what `wirechat server` does on SIGTERM
    await server.close()

    assert [(e.request_id, e.code) for e in await anonymous] == [(0, ErrorCode.SHUTDOWN)]
    async with asyncio.timeout(WAIT):
        async for _ in client.messages():
            pass
    assert client.closed_reason == CloseReason.SHUTDOWN.value
    with pytest.raises(SessionClosed):
        await client.send(["alice"], "anyone?")
    with pytest.raises(OSError):
        await asyncio.open_connection(*server.address)
    await client.close()


async def test_garbage_leaves_no_task_behind(service: ChatService, server: CustomServer) -> None:
    baseline = asyncio.all_tasks()
    garbage = [b"\x80\x00", b"\x05\x42\x01abc", b"\xff\xff\xff\xff\x0f", b"\x03\x04\x01\x00"]
    hello = Connection(Role.CLIENT).send(Hello())
    for i in range(40):
        reader, writer = await asyncio.open_connection(*server.address)
        writer.write(hello + garbage[i % len(garbage)])
        if i % 3 == 0:
            writer.transport.abort()  # some vanish without reading the answer
        else:
            await read_until_closed(reader, writer)
    async with open_client(server.address) as client:  # a logged-in client, then gone
        await client.signup("carol", "pw-secret-123")
    async with asyncio.timeout(WAIT):
        while asyncio.all_tasks() - baseline:  # noqa: ASYNC110 - tasks have no "all done" event
            await asyncio.sleep(0.02)
    assert service.live_sessions("carol") == 0


async def small_window_connection(
    address: tuple[str, int],
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    """A connection whose small receive buffer fills fast when it does not read."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, address)
    return await asyncio.open_connection(sock=sock)


async def read_events(reader: asyncio.StreamReader, codec: Connection, count: int) -> list[object]:
    """The next ``count`` events the server sends."""
    events: list[object] = []
    async with asyncio.timeout(WAIT):
        while len(events) < count:
            data = await reader.read(65536)
            assert data, f"closed after {events!r}"
            codec.receive_data(data)
            while len(events) < count and (event := codec.next_event()) is not NEED_DATA:
                events.append(event)
    return events


async def test_requests_behind_a_login_that_waits_keep_their_order(
    service: ChatService, server: CustomServer
) -> None:
    """LOGIN waits for the password hasher (it runs in a thread); the requests pipelined
    behind it are answered after it, in order, and the backlog follows LOGGED_IN."""
    async with open_client(server.address) as alice:
        await alice.signup("alice", "pw-secret-123")
        async with open_client(server.address) as bob:
            await bob.signup("bob", "pw-secret-123")
        for text in ("one", "two"):
            await alice.send(["bob"], text)
    reader, writer = await asyncio.open_connection(*server.address)
    codec = Connection(Role.CLIENT)
    writer.write(
        codec.send(Hello())
        + codec.send(Login(1, "bob", "pw-secret-123"))
        + codec.send(Ping(2, b"a"))
        + codec.send(Send(3, ("nobody",), "hi"))
        + codec.send(Ping(4, b"b"))
    )
    events = await read_events(reader, codec, 7)
    replies = [e for e in events if not isinstance(e, Deliver)]
    assert [type(e) for e in replies] == [Welcome, LoggedIn, Pong, Sent, Pong]
    assert [getattr(e, "request_id", 0) for e in replies] == [0, 1, 2, 3, 4]
    assert events.index(replies[1]) < min(i for i, e in enumerate(events) if isinstance(e, Deliver))
    assert [e.body for e in events if isinstance(e, Deliver)] == ["one", "two"]
    writer.close()


async def test_a_client_that_pipelines_without_reading_is_paused_not_dropped(
    server: CustomServer,
) -> None:
    """Replies pile up past the high-water mark while the client does not read; the server
    stops taking requests, and once the client reads, every reply arrives, in order."""
    reader, writer = await small_window_connection(server.address)
    codec = Connection(Role.CLIENT)
    payload = b"p" * 60_000
    count = 150  # 9 MB of PONGs: past HIGH_WATER plus the 4 MB a socket may buffer
    # (signed up first: before a login a frame is at most 1 KiB, ServerLimits)
    writer.write(codec.send(Hello()) + codec.send(Signup(1, "piper", "pw-secret-123")))
    for i in range(count):
        writer.write(codec.send(Ping(i + 1, payload)))
    await asyncio.sleep(0.3)  # the server fills its buffers and stops reading
    events = await read_events(reader, codec, count + 2)
    assert isinstance(events[0], Welcome)
    assert isinstance(events[1], SignedUp)
    assert [(e.request_id, e.payload == payload) for e in events[2:]] == [
        (i + 1, True) for i in range(count)
    ]
    writer.write(codec.send(Ping(1, b"still open")))
    assert await read_events(reader, codec, 1) == [Pong(1, b"still open")]
    writer.close()


async def test_a_client_that_never_reads_its_replies_is_a_slow_consumer(
    server: CustomServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_server, "STALL_TIMEOUT", 0.3)
    monkeypatch.setattr(_server, "STALL_CHECK", 0.05)
    reader, writer = await small_window_connection(server.address)
    codec = Connection(Role.CLIENT)
    # (signed up first: before a login a frame is at most 1 KiB, ServerLimits)
    writer.write(codec.send(Hello()) + codec.send(Signup(1, "never", "pw-secret-123")))
    count = 300  # 18 MB of PONGs: more than any socket buffer holds
    for i in range(count):
        writer.write(codec.send(Ping(i + 2, b"p" * 60_000)))
    await asyncio.sleep(1.0)  # reads nothing for more than STALL_TIMEOUT
    events = await read_until_closed(reader, writer, codec)
    assert isinstance(events[0], Welcome)
    assert isinstance(events[1], SignedUp)
    assert all(isinstance(e, Pong) for e in events[2:-1])
    assert len(events) - 3 < count  # not every request was answered
    assert isinstance(events[-1], Error)
    assert (events[-1].request_id, events[-1].code) == (0, ErrorCode.SLOW_CONSUMER)


async def test_the_drivers_take_any_codec_factory(service: ChatService) -> None:
    """``codec=`` on both drivers: every connection's codec comes from the factory, one per
    side, and the chat works through it (protobuf-tcp rides on this)."""
    made: list[Role] = []

    def codec(role: Role) -> Connection:
        made.append(role)
        return Connection(role)

    server = await start_server(service, "127.0.0.1", 0, codec=codec)
    try:
        async with open_client(server.address, codec=codec) as alice:
            await alice.signup("alice", "pw-secret-123")
            await alice.send(["alice"], "through the factory")
            assert (await alice.next_message(WAIT)).body == "through the factory"
            assert alice.transport.welcome is not None
    finally:
        await server.close()
    assert sorted(role.value for role in made) == ["client", "server"]
