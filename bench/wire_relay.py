"""The counting relay: a TCP proxy that counts and classifies every byte it forwards.

Used by ``bench/wire.py`` (which documents the method). One relay per measured client; the
client connects to ``relay.address`` instead of the server's. :func:`settle` decides when the
bytes of an operation are all in.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import struct
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Protocol

from transports._bytes import CATEGORIES

log = logging.getLogger(__name__)

C2S, S2C = "c2s", "s2c"
DIRECTIONS = (C2S, S2C)

#: A relay is quiet once no byte has crossed it for this long (seconds). A peer's immediate
#: reaction to a frame (a PING ACK, a WINDOW_UPDATE, a trailer after a push) comes within
#: microseconds on a loopback where a round trip takes ~0.1 ms; 30 ms is hundreds of times
#: that. Frames a runtime sends on a timer or by its own estimate (grpc's BDP pings, its
#: WINDOW_UPDATEs) can come later: they are the connection's frames, never in a call's headline
#: (bench/wire.py reports them apart, the "amortized" rows).
QUIET = 0.030
#: Give up waiting for quiet after this long: a transport that chatters on its own (say a
#: keepalive every few ms) cannot be measured by quiescence, and we say so instead of guessing.
SETTLE_TIMEOUT = 5.0
RELAY_CHUNK = 1 << 16


class MeasurementError(RuntimeError):
    """The bytes could not be attributed honestly (never quiet, unparsed or miscounted bytes)."""


class WireAccount(Protocol):
    """Classifies one direction of one connection into CATEGORIES: the counters beside each
    transport (``transports/<name>/_bytes.py``, named by the registry) are such accounts."""

    totals: Counter[str]  # category -> bytes of whole frames so far
    by_kind: Counter[str]  # frame kind -> bytes so far (diagnostics)
    epoch: int  # the operation in progress, set through CountingRelay.begin()

    last_ids: dict[str, int]  # the latest request id the counter saw ("request")

    @property
    def pending(self) -> int:
        """Bytes held back because they do not yet form a whole frame."""
        ...

    def receive_data(self, data: bytes) -> None: ...


#: Makes the (client-to-server, server-to-client) accounts of one new connection.
AccountFactory = Callable[[], tuple[WireAccount, WireAccount]]


# -- kernel cross-check ------------------------------------------------------------------------
# struct tcp_info (include/uapi/linux/tcp.h): tcpi_bytes_acked and tcpi_bytes_received are the
# two u64 at offset 120 (Linux >= 4.1): the kernel's own count of the payload bytes that crossed
# a socket. Comparing them with the relay's counts checks the relay independently of its code,
# the job a packet capture does (bench/capture.py checks the steady figures against one).
_TCP_INFO_COUNTS = struct.Struct("=QQ")
_TCP_INFO_COUNTS_AT = 120


def kernel_counts(sock: socket.socket | None) -> tuple[int, int] | None:
    """(bytes sent and acknowledged by the peer, bytes received) of a TCP socket, or None."""
    if sock is None or not hasattr(socket, "TCP_INFO"):
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 256)
    except (OSError, ValueError):
        return None
    if len(info) < _TCP_INFO_COUNTS_AT + _TCP_INFO_COUNTS.size:
        return None
    acked, received = _TCP_INFO_COUNTS.unpack_from(info, _TCP_INFO_COUNTS_AT)
    return acked, received


# -- the counting relay ------------------------------------------------------------------------
@dataclass(frozen=True)
class Count:
    """Bytes of one direction: cumulative, or per operation after subtracting two snapshots."""

    bytes: int = 0
    categories: dict[str, int] = field(default_factory=lambda: dict.fromkeys(CATEGORIES, 0))
    kinds: dict[str, int] = field(default_factory=dict)  # frame kind -> bytes

    def __add__(self, other: Count) -> Count:
        kinds = Counter(self.kinds)
        kinds.update(other.kinds)
        return Count(
            self.bytes + other.bytes,
            {k: self.categories[k] + other.categories[k] for k in CATEGORIES},
            dict(kinds),
        )

    def __sub__(self, other: Count) -> Count:
        kinds = {k: v - other.kinds.get(k, 0) for k, v in self.kinds.items()}
        return Count(
            self.bytes - other.bytes,
            {k: self.categories[k] - other.categories[k] for k in CATEGORIES},
            {k: v for k, v in kinds.items() if v},
        )

    @property
    def parsed(self) -> int:
        return sum(self.categories.values())


class RelayConnection:
    """One client connection through the relay: raw counts and a classifier per direction."""

    def __init__(self, index: int, factory: AccountFactory, epoch: int = 0) -> None:
        self.index = index
        self.raw = {C2S: 0, S2C: 0}
        self.accounts: dict[str, WireAccount] = dict(zip(DIRECTIONS, factory(), strict=True))
        for account in self.accounts.values():
            account.epoch = epoch
        self.ends: tuple[asyncio.StreamWriter, ...] = ()  # towards the client, the server
        self.client_sock: socket.socket | None = None  # the relay's end towards the client
        self.server_sock: socket.socket | None = None  # the relay's end towards the server
        # A socket's bytes_acked may count the SYN of the connection it opened: keep the value
        # before any data was sent as the zero. (bytes_received does not count SYN or data the
        # relay has not read yet, so it needs no baseline.)
        self.acked_zero = {"client side": 0, "server side": 0}
        self.open = True
        self.eof = False  # a FIN moves the kernel counters by one: compare only before it
        self.parse_error: Exception | None = None
        self.kernel_checks = 0  # quiet moments at which the kernel agreed with the relay

    def count(self, direction: str) -> Count:
        account = self.accounts[direction]
        return Count(self.raw[direction], dict(account.totals), dict(account.by_kind))

    def feed(self, direction: str, data: bytes) -> None:
        self.raw[direction] += len(data)
        if self.parse_error is None:
            try:
                self.accounts[direction].receive_data(data)
            except Exception as exc:  # a parser bug must not break the client being measured
                log.exception("relay connection %d: cannot parse %s bytes", self.index, direction)
                self.parse_error = exc

    def unsettled(self) -> list[str]:
        """Why this connection is not at a frame boundary with every byte delivered, if so."""
        reasons = [
            f"{d}: {self.accounts[d].pending} bytes of an incomplete frame"
            for d in DIRECTIONS
            if self.accounts[d].pending
        ]
        if not self.open or self.eof:
            return reasons
        expected = {
            "client side": (self.client_sock, self.raw[S2C], self.raw[C2S]),
            "server side": (self.server_sock, self.raw[C2S], self.raw[S2C]),
        }
        checked = 0
        for side, (sock, sent, received) in expected.items():
            counts = kernel_counts(sock)
            if counts is None:
                continue
            checked += 1
            counts = (counts[0] - self.acked_zero[side], counts[1])
            if counts != (sent, received):
                reasons.append(
                    f"{side}: kernel acked/received {counts}, relay forwarded/read "
                    f"{(sent, received)} (bytes in flight)"
                )
        if checked == 2 and not reasons:
            self.kernel_checks += 1
        return reasons


class CountingRelay:
    """A TCP proxy on 127.0.0.1:0 in front of ``upstream`` that counts every byte it forwards.

    Bytes are counted (and classified by the account the factory makes) as the relay reads
    them, before it writes them on, so nothing can reach the peer uncounted.
    """

    def __init__(self, upstream: tuple[str, int], factory: AccountFactory) -> None:
        self.upstream = upstream
        self.factory = factory
        self.connections: list[RelayConnection] = []
        self.epoch = 0  # the operation in progress (see begin())
        self.last_activity = 0.0  # loop.time() of the last byte read
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    @property
    def address(self) -> tuple[str, int]:
        assert self._server is not None, "start() the relay first"
        host, port = self._server.sockets[0].getsockname()[:2]
        return host, port

    async def start(self) -> CountingRelay:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        return self

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()  # the pumps then read EOF and their handler tasks end by themselves
        if self._tasks:
            _, stuck = await asyncio.wait(list(self._tasks), timeout=5.0)
            for task in stuck:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
        if self._server is not None:
            await self._server.wait_closed()

    async def __aenter__(self) -> CountingRelay:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def begin(self, epoch: int) -> None:
        """Number the operation about to start, for the parsers' attribution of late frames."""
        self.epoch = epoch
        for conn in self.connections:
            for account in conn.accounts.values():
                account.epoch = epoch

    def total(self, direction: str) -> Count:
        """Everything counted so far in one direction, over all connections."""
        total = Count()
        for conn in self.connections:
            total = total + conn.count(direction)
        return total

    def snapshot(self) -> dict[str, Count]:
        return {d: self.total(d) for d in DIRECTIONS}

    def unsettled(self) -> list[str]:
        reasons: list[str] = []
        for conn in self.connections:
            if conn.parse_error is not None:
                raise MeasurementError(
                    f"relay connection {conn.index} carried bytes the parser rejected: "
                    f"{conn.parse_error!r}"
                )
            reasons += [f"connection {conn.index} {reason}" for reason in conn.unsettled()]
        return reasons

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self._writers.add(writer)
        self.last_activity = asyncio.get_running_loop().time()  # a connect is activity too
        conn = RelayConnection(len(self.connections), self.factory, self.epoch)
        conn.client_sock = writer.get_extra_info("socket")
        try:
            up_reader, up_writer = await asyncio.open_connection(*self.upstream)
        except OSError:
            log.warning("relay: upstream %s:%d refused", *self.upstream)
            writer.close()
            self._tasks.discard(task)
            self._writers.discard(writer)
            return
        self._writers.add(up_writer)
        conn.ends = (writer, up_writer)
        conn.server_sock = up_writer.get_extra_info("socket")
        for side, sock in (("client side", conn.client_sock), ("server side", conn.server_sock)):
            counts = kernel_counts(sock)
            conn.acked_zero[side] = counts[0] if counts else 0
        self.connections.append(conn)
        try:
            await asyncio.gather(
                self._pump(conn, C2S, reader, up_writer), self._pump(conn, S2C, up_reader, writer)
            )
        finally:
            conn.open = False
            for end in conn.ends:
                end.close()
                self._writers.discard(end)
            self._tasks.discard(task)

    async def _pump(
        self,
        conn: RelayConnection,
        direction: str,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
    ) -> None:
        loop = asyncio.get_running_loop()
        try:
            while data := await reader.read(RELAY_CHUNK):
                self.last_activity = loop.time()
                conn.feed(direction, data)
                writer.write(data)
                await writer.drain()
            conn.eof = True
            if writer.can_write_eof():
                writer.write_eof()  # pass a half-close on: the peer decides what it means
        except (ConnectionError, OSError):
            conn.open = False  # a reset ends both directions: close both ends, so that the
            for end in conn.ends:  # other pump reads EOF and each peer sees the connection go
                end.close()


async def settle(
    relays: Iterable[CountingRelay],
    *,
    quiet: float = QUIET,
    timeout: float = SETTLE_TIMEOUT,
    from_now: bool = True,
) -> None:
    """Wait until every relay has been quiet for ``quiet`` seconds at a frame boundary with
    every byte it read also delivered (the kernel's counters agree), all at the same moment.

    With ``from_now`` the quiet period runs from the later of the last byte and this call, so
    a frame that an operation causes up to ``quiet`` seconds after it completed (a
    WINDOW_UPDATE, a PING and its ACK) is still counted to it. Without it, a relay that has
    been idle long enough is settled at once (the check before an operation starts).
    """
    relays = list(relays)
    loop = asyncio.get_running_loop()
    start = loop.time() if from_now else 0.0
    deadline = loop.time() + timeout
    while True:
        now = loop.time()
        idle = min((now - max(relay.last_activity, start) for relay in relays), default=quiet)
        reasons = [reason for relay in relays for reason in relay.unsettled()]
        if idle >= quiet and not reasons:
            return
        if now > deadline:
            raise MeasurementError(
                f"no quiet moment within {timeout:.1f} s (last byte {idle * 1000:.1f} ms ago): "
                + ("; ".join(reasons) or "traffic kept flowing")
            )
        await asyncio.sleep(max(quiet - idle, 0.002))


__all__ = [
    "C2S",
    "DIRECTIONS",
    "QUIET",
    "S2C",
    "AccountFactory",
    "Count",
    "CountingRelay",
    "MeasurementError",
    "RelayConnection",
    "WireAccount",
    "kernel_counts",
    "settle",
]
