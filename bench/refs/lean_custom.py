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
"""

from __future__ import annotations

import socket
from typing import Any

from transports.custom import (
    NEED_DATA,
    Connection,
    Error,
    Hello,
    Role,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)

#: Bytes asked of one ``recv``: a reply to a send is 13 bytes, a login backlog can be larger.
RECV_BYTES = 64 * 1024
#: A reply that takes longer than this is a hung server, not a slow one.
TIMEOUT_S = 10.0


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


__all__ = ["LeanCustomClient", "LeanError"]
