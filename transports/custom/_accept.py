"""The custom listeners' accept: a bounded number of connections per loop iteration.

Theory of operation (``transports._guard.ServerLimits`` holds the numbers and their reasons;
docs/LIMITS.md "Overload and the listen queue")
  * The event loop's own accept (libuv) takes every connection waiting in the kernel's queue
    in one go: a descriptor and a connection object each, before any is counted or refused.
    So the connection cap had to leave a whole listen backlog of descriptors free, and one
    loop iteration set up a whole burst of connects while every session waited.
  * ``Acceptor`` owns the listening socket instead: when it is readable, it accepts at most
    ``accepts_per_turn`` connections (the rest stay queued; the socket stays readable, so
    the next iteration takes the next ones) and hands each to the loop as a protocol
    (``loop.connect_accepted_socket``, over TLS when given). The cap needs only that many
    descriptors of headroom (plus the lingering refusals), and the listen backlog can be the
    kernel's largest at no cost in descriptors.
  * Refusal at the accept (``_refuse_at_once``): once REFUSED_LINGERING refused connections
    linger, a connection the Guard would refuse (``Guard.would_refuse``, which counts and
    evicts nothing) gets its ERROR SERVER_BUSY written on the bare socket and is closed: no
    transport, no connection object, ~4 times cheaper than setting one up to refuse it, so a
    flood's reconnects drain the listen queue faster. (Past the lingering bound a refused
    connection always closed at once: PROTOCOL.md 9.7, the client may see a reset after the
    ERROR.) Not over TLS: the refusal would be in clear.
  * Sessions first while the loop runs behind (``crowd_lag``): a connection from a crowded
    address (``crowded`` connections without a session already: a flood's) is parked, set
    up CROWD_SETUPS per loop iteration (``_unpark``), or refused at once, "busy", when PARKED
    wait already or the cap has no room for it (parked connections count against the cap:
    ``Guard.park``); the others (a person's connect) are set up at once. Meanwhile the
    listener drains the kernel's queue, up to DRAIN connections or DRAIN_SECONDS of
    accepting per iteration, so a person's connect does not wait behind thousands of the
    flood's in it (the hostile scene: an owner's connect accepted 1.35 s after its
    handshake, with the queue full at 4,096 and 64 taken per iteration), and a parked
    connection, unlike a refused one, is not a reconnect the moment after.
  * Out of descriptors (EMFILE, ENFILE, ...): accepting pauses ACCEPT_RETRY seconds instead of
    spinning on a queue that stays readable.
"""

from __future__ import annotations

import asyncio
import errno
import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from transports._guard import Guard, Refusal, ServerLimits, peer_host
from transports.custom._bounds import _Quiet, log_refusal
from transports.custom._events import Error
from transports.custom._wire import ErrorCode

log = logging.getLogger(__name__)

_log_accept = _Quiet("no descriptor to accept a connection; pausing accepts")

#: Connections parked at once (``Acceptor._park``), at most, and only while the cap has room
#: for them (each counts against it: ``Guard.park``): as many as a full listen queue holds
#: (``ServerLimits.backlog``), so parking holds no more kernel buffers than the queue did.
PARKED = 4096
#: Parked connections set up per loop iteration while the loop runs behind (~0.2 ms each
#: with its HELLO and WELCOME, or its cut frame: ``bench`` helper figures in docs/LIMITS.md).
CROWD_SETUPS = 8
#: Connections accepted per loop iteration, at most, while the loop runs behind; and the
#: seconds of accepting (and parking or refusing) one iteration may spend on them. An accept
#: and a park cost ~10-20 us: 0.5 ms takes ~25-50 connections out of the kernel's queue. (2 ms
#: until stop 24: cut with ``accepts_per_turn``, so that a flood's iteration is a quarter as
#: long and a session's request waits that much less behind it, docs/LIMITS.md.)
DRAIN = 512
DRAIN_SECONDS = 0.0005
_BUSY = Refusal("the server is busy; try again in a moment")
#: Refusal frames an Acceptor keeps encoded, by sentence (one per client address at most).
REFUSAL_FRAMES = 1024
#: Seconds the listener stops accepting after the process ran out of descriptors (EMFILE):
#: the queue stays readable, so accepting again at once would spin the loop.
ACCEPT_RETRY = 0.1


class Acceptor:
    """A listening socket whose connections are accepted ``accepts_per_turn`` per loop
    iteration (see the module docstring) and handed to the event loop as ``factory``'s
    protocols (``loop.connect_accepted_socket``; over TLS when ``tls`` is given)."""

    def __init__(
        self,
        socks: list[socket.socket],
        factory: Callable[[], asyncio.Protocol],
        limits: ServerLimits,
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout: float | None = None,
        guard: Guard | None = None,
        encode: Callable[[Error], bytes] | None = None,
    ) -> None:
        self.socks = socks
        #: (with ``encode``, a refusal's frame: refusals at the accept, ``_refuse_at_once``)
        self._guard = guard
        self._encode = encode
        self._refusals: dict[str, bytes] = {}  # a refusal's sentence -> its frame
        self._factory = factory
        self._limits = limits
        self._tls = tls
        self._tls_timeout = tls_handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._setting_up: set[asyncio.Task[Any]] = set()  # connections being set up
        self._retry: asyncio.TimerHandle | None = None
        self._closed = False
        # accepted, set up later (``_park``): uncrowded addresses' first, then crowded ones'
        self._first: deque[socket.socket] = deque()
        self._parked: deque[socket.socket] = deque()
        self._unparking = False

    @classmethod
    async def listen(
        cls,
        host: str,
        port: int,
        factory: Callable[[], asyncio.Protocol],
        limits: ServerLimits,
        tls: ssl.SSLContext | None = None,
        tls_handshake_timeout: float | None = None,
        guard: Guard | None = None,
        encode: Callable[[Error], bytes] | None = None,
    ) -> Acceptor:
        """Bind (host, port) (every address ``host`` resolves to), listen with the
        limits' backlog and start accepting. With ``guard`` and ``encode`` (an ERROR's
        frame), connections the guard would refuse may be refused at their accept."""
        loop = asyncio.get_running_loop()
        infos = await loop.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        socks: list[socket.socket] = []
        try:
            # (every address ``host`` resolves to, as asyncio's create_server binds them:
            # "localhost" is ::1 and 127.0.0.1, "" every IPv4 and IPv6 address)
            for family, kind, proto, _, where in dict.fromkeys(infos):
                sock = socket.socket(family, kind, proto)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                if family == socket.AF_INET6:  # (its own family only, beside the IPv4 one)
                    sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
                sock.bind(where)
                sock.listen(limits.backlog)
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        acceptor = cls(socks, factory, limits, tls, tls_handshake_timeout, guard, encode)
        acceptor._listen()
        return acceptor

    @property
    def sock(self) -> socket.socket:
        """The first listening socket (the address announced)."""
        return self.socks[0]

    def _listen(self) -> None:
        for sock in self.socks:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def _accept(self, listening: socket.socket) -> None:
        """The queue is readable: take up to DRAIN connections (DRAIN_SECONDS of accepting)
        out of it; set up ``accepts_per_turn`` of them now (CROWD_SETUPS while the loop runs
        behind, ``crowd_lag``), a person's first, and park the rest, set up as many per
        iteration (``_unpark``) in order: those of uncrowded addresses first. A connection
        from a crowded address (``crowded`` connections without a session already) waits
        behind every parked one. When the park is full, or the cap has no room for one more
        (``Guard.park``), it is refused at once, "busy"."""
        loop = self._loop
        guard, limits = self._guard, self._limits
        lagging = guard is not None and guard.lag >= limits.crowd_lag
        room = CROWD_SETUPS if lagging else limits.accepts_per_turn
        ends = time.perf_counter() + DRAIN_SECONDS
        for n in range(DRAIN):
            if n & 15 == 15 and time.perf_counter() > ends:
                return  # (the rest at the next iteration: the socket stays readable)
            try:
                conn, where = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:  # (reset while queued)
                continue
            except OSError as exc:
                if exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    _log_accept(loop.time(), exc)
                    self._pause(ACCEPT_RETRY)
                    return
                raise
            conn.setblocking(False)
            try:
                if self._refuse_at_once(conn):
                    continue
                crowded = False
                if guard is not None:
                    crowded = guard.waiting_from(peer_host(where)) >= limits.crowded
                if room > 0 and not (self._first or (crowded and self._parked)):
                    room -= 1
                    self._set_up(conn)
                elif guard is None:  # (nothing counts a parked one: the rest stay queued)
                    self._set_up(conn)
                    return
                else:
                    self._park(conn, first=not crowded)
            except Exception:  # a bug of ours: this connection goes, the listener goes on
                log.exception("refusing a connection at its accept failed")
                conn.close()

    def _set_up(self, conn: socket.socket) -> None:
        loop = self._loop
        task = loop.create_task(
            loop.connect_accepted_socket(
                self._factory,
                conn,
                ssl=self._tls,
                ssl_handshake_timeout=self._tls_timeout if self._tls is not None else None,
            )
        )
        self._setting_up.add(task)
        task.add_done_callback(self._done)

    def _park(self, conn: socket.socket, first: bool = False) -> None:
        """Hold ``conn`` to set it up later (``first``: before every crowded address's), or
        refuse it at once when PARKED wait already or the cap has no room for it."""
        guard = self._guard
        if self._waiting() >= PARKED or guard is None or not guard.park():
            self._refuse_now(conn, _BUSY)
            return
        (self._first if first else self._parked).append(conn)
        if not self._unparking:
            self._unparking = True
            self._loop.call_soon(self._unpark)

    def _waiting(self) -> int:
        return len(self._first) + len(self._parked)

    def _unpark(self) -> None:
        """Set up parked connections, those of uncrowded addresses first: CROWD_SETUPS per
        iteration while the loop runs behind, else ``accepts_per_turn``."""
        guard, limits = self._guard, self._limits
        lagging = guard is not None and guard.lag >= limits.crowd_lag
        for _ in range(CROWD_SETUPS if lagging else limits.accepts_per_turn):
            queue = self._first or self._parked
            if not queue:
                break
            if guard is not None:
                guard.unpark()  # (its own admission counts it from now on)
            self._set_up(queue.popleft())
        if self._waiting() and not self._closed:
            self._loop.call_soon(self._unpark)
        else:
            self._unparking = False

    def _refuse_at_once(self, conn: socket.socket) -> bool:
        """Refuse ``conn`` here, if the Guard would refuse it and no more refused connections
        may linger: its ERROR SERVER_BUSY straight to the socket, then close (as a refusal
        past REFUSED_LINGERING always did). False: set it up as usual (it is admitted, or
        refused with a linger, by the connection itself)."""
        guard, encode = self._guard, self._encode
        if guard is None or encode is None or self._tls is not None:
            return False
        if not guard.lingering_full:
            return False
        try:
            host = peer_host(conn.getpeername())
        except OSError:  # (reset while queued)
            conn.close()
            return True
        refusal = guard.would_refuse(host)
        if refusal is None:
            return False
        self._refuse_now(conn, refusal)
        return True

    def _refuse_now(self, conn: socket.socket, refusal: Refusal) -> None:
        """ERROR SERVER_BUSY with ``refusal``'s reason straight to ``conn``, then close (over
        TLS, or with no frame to write, only close: a frame in clear would be garbage)."""
        log_refusal(self._loop.time(), refusal)
        if self._tls is not None or self._encode is None:
            conn.close()
            return
        text = str(refusal)
        frame = self._refusals.get(text)
        if frame is None:
            frame = self._encode(Error(0, ErrorCode.SERVER_BUSY, text))
            if len(self._refusals) < REFUSAL_FRAMES:
                self._refusals[text] = frame
        try:
            conn.send(frame)
        except OSError:
            pass
        conn.close()

    def _done(self, task: asyncio.Task[Any]) -> None:
        self._setting_up.discard(task)
        if not task.cancelled() and task.exception() is not None:  # (a TLS handshake failed)
            log.debug("accepting a connection failed: %r", task.exception())

    def _pause(self, seconds: float) -> None:
        for sock in self.socks:
            self._loop.remove_reader(sock.fileno())
        self._retry = self._loop.call_later(seconds, self._resume)

    def _resume(self) -> None:
        self._retry = None
        if not self._closed:
            self._listen()

    def close(self) -> None:
        """Stop accepting and close the listening socket (connections stay)."""
        if self._closed:
            return
        self._closed = True
        if self._retry is not None:
            self._retry.cancel()
        for sock in self.socks:
            if self._retry is None:
                self._loop.remove_reader(sock.fileno())
            sock.close()
        for queue in (self._first, self._parked):
            while queue:
                if self._guard is not None:
                    self._guard.unpark()
                queue.popleft().close()

    async def wait_closed(self) -> None:
        """Wait for the connections accepted before ``close`` to be set up."""
        if self._setting_up:
            await asyncio.wait(list(self._setting_up))


__all__ = [
    "ACCEPT_RETRY",
    "CROWD_SETUPS",
    "DRAIN",
    "DRAIN_SECONDS",
    "PARKED",
    "REFUSAL_FRAMES",
    "Acceptor",
]
