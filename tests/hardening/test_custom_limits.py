"""Issue 14 on the TCP transports (custom and protobuf-tcp share the drivers): every bound of
``ServerLimits`` is enforced with a clear answer, tried as an attacker would, in-process with
small numbers so each test takes about a second.

Each test names the defect of issue 14 it covers and fails on the code before the fix.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator

import pytest

from core import ChatService
from transports import protobuf_tcp
from transports._guard import Guard, ServerLimits
from transports.custom import (
    NEED_DATA,
    Connection,
    ConnectionClosed,
    Error,
    ErrorCode,
    Hello,
    LoggedOut,
    Logout,
    Ping,
    Pong,
    Role,
    SignedUp,
    Signup,
    Welcome,
    start_server,
)
from transports.custom._codec import CodecFactory
from transports.custom._events import Event
from transports.custom._server import CustomServer
from transports.custom._wire import MAX_FRAME

pytestmark = pytest.mark.timeout(60)
WAIT = 5.0  # the most any single step may take before the test gives up


@contextlib.asynccontextmanager
async def serving(
    service: ChatService, codec: CodecFactory = Connection, **limits: object
) -> AsyncIterator[CustomServer]:
    """A server on 127.0.0.1 with these ServerLimits, closed afterwards."""
    guard = Guard(ServerLimits(**limits))  # type: ignore[arg-type]
    server = await start_server(service, "127.0.0.1", 0, codec=codec, guard=guard)
    try:
        yield server
    finally:
        await server.close()


class Peer:
    """A raw connection driven through a client codec, so a test can misbehave on purpose."""

    def __init__(self, codec: CodecFactory = Connection) -> None:
        self.codec = codec(Role.CLIENT)
        self.reader: asyncio.StreamReader
        self.writer: asyncio.StreamWriter

    async def open(
        self, address: tuple[str, int], *, source: str = "127.0.0.1", rcvbuf: int = 0
    ) -> Peer:
        sock = socket.socket()
        if rcvbuf:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)
        sock.bind((source, 0))
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, address)
        self.reader, self.writer = await asyncio.open_connection(sock=sock)
        return self

    def send(self, *events: Event) -> None:
        self.writer.write(b"".join(self.codec.send(e) for e in events))

    async def events(self, count: int) -> list[object]:
        """The next ``count`` events (fewer if the server closes first)."""
        found: list[object] = []
        async with asyncio.timeout(WAIT):
            while len(found) < count:
                while len(found) < count and (event := self.codec.next_event()) is not NEED_DATA:
                    if isinstance(event, ConnectionClosed):
                        return found
                    found.append(event)
                if len(found) < count:
                    self.codec.receive_data(await self._read())
        return found

    async def until_closed(self, wait: float = WAIT) -> list[object]:
        """Every event until the server closes the connection."""
        found: list[object] = []
        async with asyncio.timeout(wait):
            while True:
                while (event := self.codec.next_event()) is not NEED_DATA:
                    if isinstance(event, ConnectionClosed):
                        self.writer.close()
                        return found
                    found.append(event)
                self.codec.receive_data(await self._read())

    async def _read(self) -> bytes:
        try:
            return await self.reader.read(65536)
        except ConnectionResetError:
            return b""

    async def greeted(self, address: tuple[str, int], **options: object) -> Peer:
        """Open, HELLO, and read WELCOME."""
        await self.open(address, **options)  # type: ignore[arg-type]
        self.send(Hello())
        [welcome] = await self.events(1)
        assert isinstance(welcome, Welcome), welcome
        return self

    def close(self) -> None:
        self.writer.close()


def refusal(events: list[object]) -> tuple[int, int]:
    """(request id, code) of the one ERROR a closed connection got."""
    [error] = [e for e in events if isinstance(e, Error)]
    return error.request_id, error.code


# -- defect 4: idle sockets, partial frames, descriptors ----------------------------------


@pytest.mark.parametrize("codec", [Connection, protobuf_tcp.Connection], ids=["custom", "pb"])
async def test_a_connection_without_a_session_is_closed_after_the_idle_timeout(
    service: ChatService, codec: CodecFactory
) -> None:
    async with serving(service, codec, idle_timeout=0.3) as server:
        idle = await Peer(codec).greeted(server.address)
        events = await idle.until_closed()
        assert refusal(events) == (0, ErrorCode.TIMED_OUT)
        assert "no login within" in events[-1].message  # type: ignore[attr-defined]


async def test_a_logged_in_connection_is_not_idle_and_logout_restarts_the_clock(
    service: ChatService,
) -> None:
    async with serving(service, idle_timeout=0.3) as server:
        user = await Peer().greeted(server.address)
        user.send(Signup(1, "idler", "pw-12345678"))
        assert await user.events(1) == [SignedUp(1, 0)]
        await asyncio.sleep(1.0)  # three idle timeouts, logged in
        user.send(Ping(2, b"still here"))
        assert await user.events(1) == [Pong(2, b"still here")]
        user.send(Logout(3))
        assert await user.events(1) == [LoggedOut(3)]
        events = await user.until_closed()  # anonymous again: the clock runs
        assert refusal(events) == (0, ErrorCode.TIMED_OUT)


async def test_a_frame_left_incomplete_is_closed_after_its_timeout(service: ChatService) -> None:
    async with serving(service, partial_frame_timeout=0.3, idle_timeout=60) as server:
        slow = await Peer().greeted(server.address)
        frame = slow.codec.send(Ping(1, b"x" * 1000))  # (at most 1 KiB before a login)
        slow.writer.write(frame[: len(frame) // 2])  # half a frame, then nothing
        events = await slow.until_closed()
        assert refusal(events) == (0, ErrorCode.TIMED_OUT)
        assert "incomplete" in events[-1].message  # type: ignore[attr-defined]
        assert server.guard.inbound == 0  # its bytes were given back


async def test_connections_from_one_address_are_capped_with_a_clear_error(
    service: ChatService,
) -> None:
    async with serving(service, max_connections_per_address=2) as server:
        first = await Peer().greeted(server.address, source="127.0.0.2")
        second = await Peer().greeted(server.address, source="127.0.0.2")
        third = await Peer().open(server.address, source="127.0.0.2")
        events = await third.until_closed()
        assert refusal(events) == (0, ErrorCode.SERVER_BUSY)
        assert "too many connections from 127.0.0.2" in events[0].message  # type: ignore[attr-defined]
        # Another address is not affected, and a closed connection frees its place.
        other = await Peer().greeted(server.address, source="127.0.0.3")
        first.close()
        async with asyncio.timeout(WAIT):
            while server.guard.from_address("127.0.0.2") > 1:  # noqa: ASYNC110 - a counter
                await asyncio.sleep(0.02)
        await Peer().greeted(server.address, source="127.0.0.2")
        second.close()
        other.close()


async def test_the_total_connection_cap_refuses_with_a_clear_error_on_protobuf_tcp(
    service: ChatService,
) -> None:
    codec = protobuf_tcp.Connection
    async with serving(service, codec, max_connections=2) as server:
        held = [
            await Peer(codec).greeted(server.address),
            await Peer(codec).greeted(server.address, source="127.0.0.2"),
        ]
        events = await (await Peer(codec).open(server.address, source="127.0.0.3")).until_closed()
        assert refusal(events) == (0, ErrorCode.SERVER_BUSY)
        assert "the server is full" in events[0].message  # type: ignore[attr-defined]
        # and the client library says so in words
        client = protobuf_tcp.open_client(server.address)
        with pytest.raises(ConnectionError, match="SERVER_BUSY: the server is full"):
            await client.connect()
        for peer in held:
            peer.close()


async def test_partial_frames_beyond_the_inbound_budget_are_refused_clearly(
    service: ChatService,
) -> None:
    """The server-wide budget for incomplete frames is a bound on memory: the connection whose
    half frame goes past it is closed with SERVER_BUSY (its bytes freed at once), and the one
    within the budget is served as usual."""
    # (frames this large come only after a login now; the budget is what is tried here)
    async with serving(service, inbound_budget=60_000, max_frame_before_login=MAX_FRAME) as server:
        a, b = await Peer().greeted(server.address), await Peer().greeted(server.address)
        frame_a = a.codec.send(Ping(1, b"a" * 50_000))
        frame_b = b.codec.send(Ping(1, b"b" * 50_000))
        a.writer.write(frame_a[:40_000])
        await asyncio.sleep(0.2)
        b.writer.write(frame_b[:30_000])  # 70 000 held: past the budget
        events = await b.until_closed()
        assert refusal(events) == (0, ErrorCode.SERVER_BUSY)
        assert "incomplete frames" in events[-1].message  # type: ignore[attr-defined]
        a.writer.write(frame_a[40_000:])
        assert await a.events(1) == [Pong(1, b"a" * 50_000)]
        assert server.guard.inbound == 0


async def test_a_user_is_not_closed_for_bytes_that_connections_without_a_session_hold(
    service: ChatService,
) -> None:
    """Half-sent frames of connections without a session spent the inbound budget: before,
    the next connection to go past it was closed, whoever it was (in the hostile scene, every
    logged-in sender of a 64 KiB message, and the ACK flood's logged-in client). Now a
    connection with a session takes the place of the oldest of them."""
    # (frames this large come only after a login now; the budget is what is tried here)
    async with serving(service, inbound_budget=60_000, max_frame_before_login=MAX_FRAME) as server:
        user = await Peer().greeted(server.address)
        user.send(Signup(1, "sender", "pw-12345678"))
        assert await user.events(1) == [SignedUp(1, 0)]
        holder = await Peer().greeted(server.address, source="127.0.0.2")
        holder.writer.write(holder.codec.send(Ping(1, b"h" * 50_000))[:45_000])
        await asyncio.sleep(0.2)
        frame = user.codec.send(Ping(2, b"u" * 50_000))
        user.writer.write(frame[:30_000])  # 75 000 held: past the budget
        events = await holder.until_closed()
        assert refusal(events) == (0, ErrorCode.SERVER_BUSY)
        user.writer.write(frame[30_000:])
        assert await user.events(1) == [Pong(2, b"u" * 50_000)]
        assert server.guard.inbound == 0


# -- defect 5 and overload: output budgets -----------------------------------------------


async def test_a_slow_consumer_of_large_messages_is_ended_by_bytes(service: ChatService) -> None:
    """Far fewer than MAX_SESSION_QUEUE (4096) pushes of 64 KiB bodies end the session: the
    queue is bounded in bytes too. Nothing is lost: every message stays pending."""
    async with serving(service) as server:
        slow = await Peer().greeted(server.address, rcvbuf=4096)
        slow.send(Signup(1, "hoarder", "pw-12345678"))
        assert await slow.events(1) == [SignedUp(1, 0)]  # from here on it reads nothing
        sender = service.open_session()
        await service.signup(sender, "sender", "pw-12345678")
        body = "m" * 65536
        sent = 0
        async with asyncio.timeout(WAIT * 2):
            while service.live_sessions("hoarder") and sent < 400:
                await service.send(sender, ["hoarder"], body)
                sent += 1
                await asyncio.sleep(0)  # let the pump run
        assert service.live_sessions("hoarder") == 0, f"still live after {sent} sends"
        assert sent < 200
        events = await slow.until_closed()
        assert refusal(events) == (0, ErrorCode.SLOW_CONSUMER)
        again = service.open_session()
        assert (await service.login(again, "hoarder", "pw-12345678")).pending == sent


async def test_a_slow_reader_finding_the_outbound_budget_spent_is_told_at_once(
    service: ChatService,
) -> None:
    """Overload is an answer: when the server-wide budget for unread output is spent, a
    connection whose output fills up is ended with SLOW_CONSUMER and the reason, at once (not
    after the stall timeout)."""
    async with serving(
        service,
        outbound_budget=100_000,
        outbound_per_connection=64 * 1024,
        stall_timeout=60,
        max_frame_before_login=MAX_FRAME,  # (50 KB PINGs without a login)
    ) as server:
        hog = await Peer().greeted(server.address, rcvbuf=4096)
        for i in range(200):  # 10 MB of PONGs it never reads
            hog.send(Ping(i + 1, b"p" * 50_000))
        events = await hog.until_closed()
        assert refusal(events) == (0, ErrorCode.SLOW_CONSUMER)
        assert "too much unread output" in events[-1].message  # type: ignore[attr-defined]
        assert server.guard.outbound == 0


# -- defect 6: fan-out into kernel buffers ------------------------------------------------


async def deaf(address: tuple[str, int], name: str) -> socket.socket:
    """A raw socket that signs up as ``name`` and then never reads again (no StreamReader
    buffering on its behalf), with a small receive buffer."""
    loop = asyncio.get_running_loop()
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8192)
    sock.setblocking(False)
    await loop.sock_connect(sock, address)
    codec = Connection(Role.CLIENT)
    await loop.sock_sendall(sock, codec.send(Hello()) + codec.send(Signup(1, name, "pw-12345678")))
    events: list[object] = []
    async with asyncio.timeout(WAIT):
        while len(events) < 2:  # WELCOME, SIGNED_UP
            codec.receive_data(await loop.sock_recv(sock, 1))  # (not a byte more)
            while (event := codec.next_event()) is not NEED_DATA:
                events.append(event)
    assert isinstance(events[1], SignedUp), events
    return sock


async def test_fan_out_to_readers_that_never_read_is_seen_in_the_kernel(
    service: ChatService,
) -> None:
    """Pushes that fit in the kernel's buffers never fill the server's own, so before, the
    sessions of readers that never read stayed live for ever. Now the kernel's counters show
    that nothing is acknowledged: each session ends (SLOW_CONSUMER), its messages pending."""
    readers = [f"deaf{i}" for i in range(4)]
    async with serving(service, stall_timeout=0.5) as server:
        socks = [await deaf(server.address, name) for name in readers]
        try:
            sender = service.open_session()
            await service.signup(sender, "loud", "pw-12345678")
            for _ in range(8):  # 8 x 16 KiB to each: past their receive windows, not our buffers
                await service.send(sender, readers, "f" * 16_384)
            async with asyncio.timeout(WAIT * 2):
                while any(service.live_sessions(name) for name in readers):  # noqa: ASYNC110
                    await asyncio.sleep(0.05)
        finally:
            for sock in socks:
                sock.close()
        again = service.open_session()
        assert (await service.login(again, readers[0], "pw-12345678")).pending == 8


# -- defect 9: the listen backlog ---------------------------------------------------------


def _somaxconn() -> int:
    """The kernel's cap on any listen backlog."""
    with open("/proc/sys/net/core/somaxconn") as value:
        return int(value.read())


def _accept_queue(port: int) -> int:
    """Connections the kernel has completed for the listener on ``port`` that the server has
    not accepted yet (the rx_queue of a LISTEN socket in /proc/net/tcp)."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            if fields[3] == "0A" and int(fields[1].split(":")[1], 16) == port:
                return int(fields[4].split(":")[1], 16)
    raise AssertionError(f"no listener on port {port}")


async def test_a_burst_of_connects_fits_in_the_listen_backlog(service: ChatService) -> None:
    """500 connects while the server is busy: the kernel queues every one for accept (a
    backlog of 100 queued 101 and left the others retrying while their clients believed they
    were connected), and each is then served."""
    count = min(500, _somaxconn())
    async with serving(service) as server:
        socks = []
        try:
            for _ in range(count):  # the loop is blocked: the server accepts nothing yet
                sock = socket.socket()
                sock.setblocking(False)
                sock.connect_ex(server.address)
                socks.append(sock)
            time.sleep(0.5)  # noqa: ASYNC251 - block the loop on purpose: nothing is accepted
            assert _accept_queue(server.address[1]) == count
            loop = asyncio.get_running_loop()
            hello = Connection(Role.CLIENT).send(Hello())
            for sock in socks:
                await loop.sock_sendall(sock, hello)
            async with asyncio.timeout(WAIT * 2):
                for sock in socks:
                    assert await loop.sock_recv(sock, 1)  # WELCOME's first byte
        finally:
            for sock in socks:
                sock.close()
