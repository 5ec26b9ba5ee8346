"""lean_custom: the leanest client of the custom protocol we can write, as an independent check.

A blocking socket and the custom codec's sans-IO ``Connection``, nothing else: no event loop,
no futures, no ChatClient rules. Each call encodes one frame, ``sendall``s it and reads until
the codec yields the reply. It speaks to the same custom server the bench's own client is
measured against, in the same run, so two things can be read off the pair of rows:

* the product's client is not the bottleneck: its client CPU per send against this one's
  (issue 8: within 1.3x);
* the bench's p50 for ``send`` is what an independent client sees (within 15 %).

Request ids follow the ChatClient's rule (the lowest free id, so 1 with one call in flight),
so the frames on the wire are byte for byte the bench client's.

``BareAsyncClient`` is the same codec under an ``asyncio.Protocol`` with one future per call,
and nothing else: what any ``await``-per-call client pays for the event loop (the future,
the task's wake-up, the coroutine's resumption) before a line of ChatClient runs. Beside the
lean client it splits ChatClient's extra cost into the event loop's share and ours.
"""

from __future__ import annotations

import asyncio
import socket
from typing import Any

from transports.custom import (
    NEED_DATA,
    Connection,
    Deliver,
    Error,
    Hello,
    MessagesGone,
    ReadMark,
    Role,
    Send,
    Sent,
    SentCopy,
    SignedUp,
    Signup,
    Welcome,
)

#: Bytes asked of one ``recv``: a reply to a send is 13 bytes, a login backlog can be larger.
RECV_BYTES = 64 * 1024
#: A reply that takes longer than this is a hung server, not a slow one.
TIMEOUT_S = 10.0


#: What the server pushes unasked (no call waits for it).
_PUSHES = (Deliver, SentCopy, ReadMark, MessagesGone)


class LeanError(RuntimeError):
    """The server answered with an ERROR frame, or closed the connection."""


class LeanCustomClient:
    """One blocking connection: ``connect()``, ``signup(name, password)``, ``send(...)``."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._sock: socket.socket | None = None
        self._conn = Connection(Role.CLIENT)

    def connect(self) -> None:
        """TCP connect (TCP_NODELAY, as the asyncio client) and the HELLO/WELCOME handshake."""
        sock = socket.create_connection(self.address, timeout=TIMEOUT_S)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._sock = sock
        versions = self._conn.versions  # offer what the bench's client offers (1..2)
        sock.sendall(self._conn.send(Hello(versions[0], versions[-1])))
        self._expect(Welcome)

    def signup(self, username: str, password: str) -> None:
        self._call(Signup(1, username, password), SignedUp)

    def send(self, recipients: tuple[str, ...], body: str) -> Sent:
        """One SEND, one SENT: the call the bench times."""
        sent: Sent = self._call(Send(1, recipients, body), Sent)
        return sent

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
        self._sock = None

    def _call(self, request: Any, reply: type) -> Any:
        sock = self._sock
        if sock is None:
            raise ConnectionError("not connected")
        sock.sendall(self._conn.send(request))
        return self._expect(reply)

    def _expect(self, kind: type) -> Any:
        """Read until the codec yields an event of ``kind`` (pushes in between are skipped)."""
        sock, conn = self._sock, self._conn
        assert sock is not None
        while True:
            event = conn.next_event()
            if event is NEED_DATA:
                data = sock.recv(RECV_BYTES)
                conn.receive_data(data)
                if not data:
                    raise LeanError("the server closed the connection")
                continue
            if isinstance(event, kind):
                return event
            if isinstance(event, Error):
                raise LeanError(f"the server refused: code 0x{event.code:02X} {event.message}")


class BareAsyncClient(asyncio.Protocol):
    """One asyncio connection, the codec and a future per call: ``await connect()``,
    ``await signup(name, password)``, ``await send(...)`` (one call in flight at a time)."""

    def __init__(self, address: tuple[str, int]) -> None:
        self.address = address
        self._conn = Connection(Role.CLIENT)
        self._transport: asyncio.Transport | None = None
        self._waiter: asyncio.Future[Any] | None = None

    async def connect(self) -> None:
        """TCP connect (TCP_NODELAY: asyncio sets it) and the HELLO/WELCOME handshake."""
        loop = asyncio.get_running_loop()
        await loop.create_connection(lambda: self, *self.address)
        versions = self._conn.versions
        await self._call(Hello(versions[0], versions[-1]), Welcome)

    async def signup(self, username: str, password: str) -> None:
        await self._call(Signup(1, username, password), SignedUp)

    async def send(self, recipients: tuple[str, ...], body: str) -> Sent:
        """One SEND, one SENT: the call the bench times."""
        transport, conn = self._transport, self._conn
        assert transport is not None
        transport.write(conn.send(Send(1, recipients, body)))
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        sent: Sent = await waiter
        return sent

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()
        self._transport = None

    async def _call(self, request: Any, reply: type) -> Any:
        assert self._transport is not None
        self._transport.write(self._conn.send(request))
        self._waiter = asyncio.get_running_loop().create_future()
        event = await self._waiter
        if not isinstance(event, reply):
            raise LeanError(f"the server answered {event!r}")
        return event

    # -- asyncio.Protocol -------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        """Every event answers the call in flight (pushes in between are skipped)."""
        conn = self._conn
        conn.receive_data(data)
        while (event := conn.next_event()) is not NEED_DATA:
            waiter = self._waiter
            if waiter is None or type(event) in _PUSHES:
                continue
            self._waiter = None
            if isinstance(event, Error):
                waiter.set_exception(
                    LeanError(f"the server refused: code 0x{event.code:02X} {event.message}")
                )
            else:
                waiter.set_result(event)

    def connection_lost(self, exc: Exception | None) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(LeanError("the server closed the connection"))
        self._waiter = None


__all__ = ["BareAsyncClient", "LeanCustomClient", "LeanError"]
