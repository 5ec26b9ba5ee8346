"""Raw custom-protocol connections for the hostile scene (``bench.hostile``): frames are built by
the protocol's own sans-IO codec (``transports.custom.Connection``), so an attacker can do what
no polite ChatClient does: never read, flood ACKs, hold half a frame, open 20,000 sockets.

* ``RawClient``: one asyncio connection from a chosen source address, with ``hello``,
  ``login``, ``ping`` and ``write`` of arbitrary frames; pushes are counted, never acked;
  ``stop_reading()`` makes it a consumer that never reads.
* ``hold_idle``: the idle-connection flood of one attacker process, with plain non-blocking
  sockets and one ``selectors`` loop (an asyncio transport per socket costs ~10 times the
  memory): it opens its share of connections spread over source addresses, sends HELLO (and,
  on some, most of a maximum-size frame), holds them, and re-opens those the server closes,
  within a bounded number of connects.
"""

from __future__ import annotations

import asyncio
import errno
import resource
import selectors
import socket
import threading
import time
from dataclasses import asdict, dataclass
from typing import Any

from transports.custom import (
    Ack,
    Connection,
    Error,
    Hello,
    LoggedIn,
    Login,
    Ping,
    Pong,
    ProtocolError,
    Role,
    Welcome,
)
from transports.custom._events import NEED_DATA, ConnectionClosed, Deliver
from transports.custom._wire import MAX_FRAME, Opcode, put_varint

#: Source addresses of the attackers: all of 127.0.0.0/8 but the canary's 127.0.0.1, so a
#: per-address connection cap refuses attackers without ever touching the canary.
ATTACKER_HOSTS = tuple(f"127.0.0.{i}" for i in range(2, 255))
HELLO_BYTES = Connection(Role.CLIENT).send(Hello(1, 1))
#: Linux TCP states (tcp_states.h) in which the peer has closed: CLOSE (after a reset),
#: CLOSE_WAIT (its FIN arrived), LAST_ACK.
_PEER_CLOSED = {7, 8, 9}


def attacker_host(i: int) -> str:
    """The i-th attacker source address (round robin)."""
    return ATTACKER_HOSTS[i % len(ATTACKER_HOSTS)]


def raise_fd_limit() -> int:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit; return the limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft != hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    return resource.getrlimit(resource.RLIMIT_NOFILE)[0]


def cpu_seconds() -> float:
    """CPU time (user + system) this process has used."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def partial_frame(fraction: float = 0.92) -> bytes:
    """The start of a maximum-size SEND frame: its length field says MAX_FRAME bytes follow,
    and ``fraction`` of them do. A server that buffers frames whole holds all of it."""
    head = bytearray()
    put_varint(head, MAX_FRAME)
    body = bytes((Opcode.SEND,)) + b"\x01" + b"x" * int(MAX_FRAME * fraction)
    return bytes(head) + body


# -- one asyncio connection -----------------------------------------------------------------
def _fail(future: asyncio.Future[Any], exc: Exception) -> None:
    """Fail ``future`` (unless it is done) and mark its exception retrieved: a connection
    closed before anyone awaited its WELCOME is an outcome the caller reads elsewhere
    (``closed``), not "Future exception was never retrieved" on stderr."""
    if not future.done():
        future.set_exception(exc)
        future.exception()  # (retrieved: asyncio logs nothing when it is collected)


class RawClient(asyncio.Protocol):
    """A custom-protocol connection driven frame by frame (module docstring)."""

    def __init__(self) -> None:
        self.codec = Connection(Role.CLIENT)
        self.transport: asyncio.Transport | None = None
        self.waiters: dict[int, asyncio.Future[Any]] = {}
        self.welcome: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.closed: asyncio.Future[str] = asyncio.get_running_loop().create_future()
        self.delivered = 0
        self.errors: list[Error] = []
        self._next_id = 1

    @classmethod
    async def open(cls, address: tuple[str, int], source: str | None = None) -> RawClient:
        """Connect to ``address`` from ``source`` (an IP; None: any)."""
        loop = asyncio.get_running_loop()
        local = (source, 0) if source else None
        _, client = await loop.create_connection(cls, *address, local_addr=local)
        return client

    # asyncio.Protocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        try:
            self.codec.receive_data(data)
            while (event := self.codec.next_event()) is not NEED_DATA:
                self._handle(event)
        except ProtocolError as exc:
            self._finish(f"the server broke the protocol: {exc}")

    def eof_received(self) -> bool | None:
        self._finish("the server closed the connection")
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish(f"connection lost: {exc}" if exc else "the server closed the connection")

    def _handle(self, event: Any) -> None:
        if isinstance(event, Welcome):
            if not self.welcome.done():
                self.welcome.set_result(event)
        elif isinstance(event, Deliver):
            self.delivered += 1
        elif isinstance(event, ConnectionClosed):
            self._finish("the server closed the connection")
        elif isinstance(event, Error) and event.request_id == 0:
            self.errors.append(event)
            _fail(self.welcome, ConnectionError(f"refused: {event.message}"))
        else:
            waiter = self.waiters.pop(getattr(event, "request_id", 0), None)
            if waiter is not None and not waiter.done():
                waiter.set_result(event)

    def _finish(self, reason: str) -> None:
        if not self.closed.done():
            self.closed.set_result(reason)
        for future in [self.welcome, *self.waiters.values()]:
            _fail(future, ConnectionError(reason))
        self.waiters.clear()

    # requests
    def write(self, data: bytes) -> None:
        """Write raw bytes (frames built with ``self.codec``)."""
        if self.transport is None or self.transport.is_closing():
            raise ConnectionError("not connected")
        self.transport.write(data)

    async def hello(self, timeout: float = 10.0) -> None:
        """Send HELLO and wait for WELCOME (ConnectionError if refused). A server whose
        connection cap is full refuses at accept, before reading a HELLO (ERROR SERVER_BUSY,
        custom PROTOCOL.md section 9.7): that ERROR may already be here, the codec closed,
        and then the refusal is the answer (no HELLO is sent after it)."""
        if not self.welcome.done():
            self.write(self.codec.send(Hello(1, 1)))
        async with asyncio.timeout(timeout):
            await self.welcome

    async def call(self, make: Any, timeout: float = 30.0) -> Any:
        """Send ``make(request_id)`` and wait for the reply with that id."""
        rid = self._next_id
        self._next_id += 1
        waiter: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self.waiters[rid] = waiter
        self.write(self.codec.send(make(rid)))
        async with asyncio.timeout(timeout):
            return await waiter

    async def login(self, username: str, password: str, timeout: float = 30.0) -> bool:
        """True when logged in, False when refused (the server closes after a refusal)."""
        reply = await self.call(lambda rid: Login(rid, username, password), timeout)
        return isinstance(reply, LoggedIn)

    async def ping(self, timeout: float = 60.0) -> None:
        """One round trip: every frame written before it has been handled."""
        reply = await self.call(lambda rid: Ping(rid, b""), timeout)
        assert isinstance(reply, Pong), reply

    def ack_frames(self, count: int, ids_per_ack: int, first_id: int) -> bytes:
        """``count`` ACK frames of ``ids_per_ack`` increasing ids from ``first_id``."""
        out = bytearray()
        for n in range(count):
            start = first_id + n * ids_per_ack
            out += self.codec.send(Ack(tuple(range(start, start + ids_per_ack))))
        return bytes(out)

    def stop_reading(self) -> None:
        """Never read again: what the server sends piles up in its buffers and ours."""
        if self.transport is not None:
            self.transport.pause_reading()

    def server_closed(self) -> bool:
        """True if the server has closed this connection, even while we do not read (a
        paused reader sees no end of stream: the kernel's TCP state tells)."""
        if self.closed.done():
            return True
        sock = self.transport.get_extra_info("socket") if self.transport else None
        if sock is None:
            return False
        try:
            state = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 1)[0]
        except OSError:
            return True
        return state in _PEER_CLOSED

    def close(self) -> None:
        if self.transport is not None:
            self.transport.abort()


# -- the idle flood (one attacker process, no asyncio) ----------------------------------------
@dataclass
class FloodStats:
    """What one idle-flood process did and saw."""

    target: int = 0  # connections it tries to hold
    fd_limit: int = 0
    connects: int = 0  # connect() calls made
    connect_failed: int = 0  # refused, reset or timed out before the TCP handshake completed
    welcomed: int = 0  # got WELCOME
    closed_before_welcome: int = 0  # the server closed (or refused) before WELCOME
    closed_after_welcome: int = 0  # the server closed a held connection (idle timeout, ...)
    peak_open: int = 0  # connections open at once, at most
    partial_bytes_sent: int = 0  # bytes of partial frames the server took
    seconds: float = 0.0
    cpu_seconds: float = 0.0  # this attacker's own CPU time (the CPU is shared with the server)


class _Slot:
    __slots__ = ("partial", "sent", "sock", "started", "state", "to_send", "welcomed")

    def __init__(self, sock: socket.socket, partial: bytes) -> None:
        self.sock = sock
        self.state = "connecting"
        self.started = time.monotonic()
        self.to_send = HELLO_BYTES + partial
        self.partial = bool(partial)
        self.sent = 0
        self.welcomed = False


def hold_idle(
    address: tuple[str, int],
    target: int,
    partial_share: float,
    seconds: float,
    host_offset: int = 0,
    max_connects: int | None = None,
    batch: int = 256,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Open ``target`` connections to ``address`` (a ``partial_share`` of them sending most
    of a maximum-size frame after HELLO), hold them for ``seconds`` (or until ``stop`` is
    set, if sooner), re-open those the server closes (at most ``max_connects`` connects in
    all, default 2 x target), then close all."""
    stats = FloodStats(target=target, fd_limit=raise_fd_limit())
    max_connects = 2 * target if max_connects is None else max_connects
    partial = partial_frame()
    partial_every = round(1 / partial_share) if partial_share > 0 else 0
    selector = selectors.DefaultSelector()
    slots: dict[int, _Slot] = {}
    connecting: dict[int, _Slot] = {}  # the slots whose connect has not completed yet
    started = time.monotonic()
    deadline = started + seconds
    buf = bytearray(65536)

    def open_one() -> None:
        n = stats.connects
        stats.connects += 1
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setblocking(False)
        try:
            sock.bind((attacker_host(host_offset + n), 0))
            err = sock.connect_ex(address)
        except OSError:
            sock.close()
            stats.connect_failed += 1
            return
        if err not in (0, errno.EINPROGRESS):
            sock.close()
            stats.connect_failed += 1
            return
        use_partial = partial_every and n % partial_every == 0
        slot = _Slot(sock, partial if use_partial else b"")
        slots[sock.fileno()] = slot
        connecting[sock.fileno()] = slot
        selector.register(sock, selectors.EVENT_WRITE, slot)

    def drop(slot: _Slot) -> None:
        if slot.partial:
            stats.partial_bytes_sent += max(0, slot.sent - len(HELLO_BYTES))
        selector.unregister(slot.sock)
        del slots[slot.sock.fileno()]
        connecting.pop(slot.sock.fileno(), None)
        slot.sock.close()

    def flush(slot: _Slot) -> None:
        try:
            sent = slot.sock.send(slot.to_send)
        except BlockingIOError:
            return
        except OSError:
            return
        slot.sent += sent
        slot.to_send = slot.to_send[sent:]

    while (now := time.monotonic()) < deadline and not (stop is not None and stop.is_set()):
        while len(slots) < target and stats.connects < max_connects and len(connecting) < batch:
            open_one()
        stats.peak_open = max(stats.peak_open, len(slots))
        for key, events in selector.select(timeout=0.2):
            slot = key.data
            if slot.state == "connecting":
                if slot.sock.getsockopt(socket.SOL_SOCKET, socket.SO_ERROR):
                    stats.connect_failed += 1
                    drop(slot)
                    continue
                slot.state = "open"
                del connecting[slot.sock.fileno()]
                flush(slot)
                selector.modify(slot.sock, selectors.EVENT_READ | selectors.EVENT_WRITE, slot)
                continue
            if events & selectors.EVENT_READ:
                try:
                    got = slot.sock.recv_into(buf)
                except BlockingIOError:
                    got = -1
                except OSError:
                    got = 0
                if got == 0:
                    if slot.welcomed:
                        stats.closed_after_welcome += 1
                    else:
                        stats.closed_before_welcome += 1
                    drop(slot)
                    continue
                if got > 1 and not slot.welcomed and buf[1] == Opcode.WELCOME:
                    slot.welcomed = True
                    stats.welcomed += 1
            if events & selectors.EVENT_WRITE:
                if slot.to_send:
                    flush(slot)
                if not slot.to_send:
                    selector.modify(slot.sock, selectors.EVENT_READ, slot)
        # connects the kernel never completed (a full backlog drops SYNs): give up on them
        for slot in [s for s in connecting.values() if now - s.started > 10.0]:
            stats.connect_failed += 1
            drop(slot)
    for slot in list(slots.values()):
        drop(slot)
    selector.close()
    stats.seconds = time.monotonic() - started
    stats.cpu_seconds = cpu_seconds()
    return asdict(stats)


__all__ = ["ATTACKER_HOSTS", "FloodStats", "RawClient", "attacker_host", "hold_idle"]
