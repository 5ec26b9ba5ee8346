"""Server-wide resource bounds shared by every listener of one server process.

Theory of operation
  * ``ServerLimits`` holds every number that bounds what clients may make the server hold:
    connections (in all and per client address), time without a session or with a frame
    half-sent, bytes queued in both directions (per connection and for the whole server), and
    how much work one read may trigger before the connection yields the loop. Each number says
    why it is what it is. The CLI (``wirechat server``) builds one from its flags.
  * ``Guard`` is the one mutable object behind those numbers, created once per server process
    and handed to every transport's ``start_server(..., guard=)``, so a connection on one
    transport counts against the same caps as one on another (an attacker gains nothing by
    spreading over ports). It only counts: each transport decides how to refuse in its own
    protocol (the custom protocol's ERROR frame, gRPC's RESOURCE_EXHAUSTED, WebSocket's 1013).
  * Every admission returns a ``Refusal`` (a reason in a person's words) or ``None``; every
    successful ``admit`` is paired with exactly one ``release``. Byte budgets work the same
    way (``reserve``/``give_back``), so the server-wide totals are exact, not estimates.
  * Under pressure, waiting gives way (docs/LIMITS.md, "When the server is full"): a
    connection without a logged-in session is *waiting* (``waiting``, from its admission or
    its logout, until ``settled`` at its login). When the cap is full, ``admit`` makes room by
    evicting the connection that has waited longest, if it has waited at least
    ``eviction_grace`` (``Waiting.evict``: the transport says why in its protocol and gives
    its place back at once). Connections with a session are never evicted, so idle sockets
    from any number of addresses cannot starve logged-in users or keep new clients out; an
    attacker can only push its own oldest sockets (and honest clients slower than the grace
    to log in) out. The waiting connections are an ``OrderedDict`` in the order they started
    waiting: finding the oldest is O(1), nothing is scanned.

Nothing here does IO or imports a transport: it is arithmetic on counters, one event loop.
"""

from __future__ import annotations

import resource
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from typing import Protocol

#: File descriptors kept out of the connection cap for the store, logs, the listeners
#: themselves and the executor's threads.
FD_RESERVE = 64
#: Waiting connections looked at, at most, to make room for one new connection: one whose
#: request is in progress (a login being checked) is skipped and counts as waiting anew.
EVICT_TRIES = 8


def _fd_ceiling() -> int:
    """The soft RLIMIT_NOFILE after raising it to the hard limit (as nginx's
    ``worker_rlimit_nofile`` does): the most descriptors this process may hold."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError):  # a container may forbid it: live with the soft limit
            pass
    return soft


@dataclass(frozen=True, slots=True)
class ServerLimits:
    """Every bound the server keeps on what clients make it hold (see the module docstring)."""

    #: Open client connections on all listeners together. ``None``: derived from the process's
    #: descriptor limit minus FD_RESERVE, so the server refuses politely instead of failing
    #: ``accept()`` with EMFILE (which leaves the client believing it is connected).
    max_connections: int | None = None
    #: Open connections from one client address (IP). 256 lets a NAT'd office or a load test
    #: from one host in, while one host alone cannot take every descriptor.
    max_connections_per_address: int = 256
    #: Seconds a connection may stay without a logged-in session (after its handshake) before
    #: it is closed: long enough to type a password, short enough that idle sockets recycle.
    idle_timeout: float = 60.0
    #: Seconds a started frame may stay incomplete. A 64 KiB frame at 1 KiB/s needs ~64 s of a
    #: dial-up line; anything slower is a slowloris.
    partial_frame_timeout: float = 30.0
    #: Bytes of incomplete inbound frames held for all connections together. 64 MiB is ~700
    #: maximal frames in flight at once; a connection whose bytes go past it is closed with a
    #: clear error (pausing it would keep its bytes: 20,000 half-sent frames pinned 2 GB).
    inbound_budget: int = 64 * 1024 * 1024
    #: Bytes of output waiting in user space for one connection before its writers wait
    #: (four maximal DELIVERs or thousands of small ones; asyncio's default is 64 KiB).
    outbound_per_connection: int = 256 * 1024
    #: Bytes of output waiting in user space for all connections together: past it, new
    #: pushes to slow readers end their sessions (their messages stay pending, Rule 17).
    outbound_budget: int = 256 * 1024 * 1024
    #: The kernel send buffer per connection (SO_SNDBUF). Linux autotunes it up to 4 MiB,
    #: which hides a reader that never reads: 256 such readers held 164 MB unseen. 128 KiB
    #: keeps a loopback round trip at full speed and makes a stall visible to our budget.
    socket_send_buffer: int = 128 * 1024
    #: Seconds a writer may wait with no byte leaving (user space or kernel) before the peer
    #: is a slow consumer and its session ends (messages stay pending).
    stall_timeout: float = 30.0
    #: Requests handled from one read before the connection yields the loop to others. A
    #: request costs ~10-100 µs, so 64 keep one turn near a millisecond.
    requests_per_turn: int = 64
    #: The listen backlog: connections the kernel queues before we accept them. It must not
    #: be far below the connection cap, or a burst of connects overflows it silently.
    backlog: int = 4096
    #: Seconds a connection without a session is safe from eviction when the server is full
    #: (a new connection then replaces the one that has waited longest, if it waited this
    #: long). A client that logs in at once needs two round trips before its LOGIN is read (a
    #: login being checked is never evicted): 5 s covers a bad mobile link. An attacker must
    #: cycle its whole share of the cap within this time to refuse anyone: 20,000 sockets in
    #: 5 s is 4,000 new connections a second.
    eviction_grace: float = 5.0

    def connection_cap(self) -> int:
        """``max_connections`` or, when unset, what the descriptor limit allows."""
        if self.max_connections is not None:
            return self.max_connections
        return max(16, _fd_ceiling() - FD_RESERVE)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection or a byte reservation was refused, in a person's words."""

    reason: str

    def __str__(self) -> str:
        return self.reason


class Waiting(Protocol):
    """A connection without a session, as the Guard sees it (each transport's connection)."""

    def evict(self, waited: float) -> bool:
        """The server is full and this connection has waited ``waited`` seconds without a
        session: tell the client why (in its protocol), close, and ``release`` its place now.
        False (nothing done) if it cannot go now: a request of it is in progress."""
        ...


@dataclass
class Guard:
    """The counters behind ``ServerLimits`` for one server process (see the module docstring)."""

    limits: ServerLimits = field(default_factory=ServerLimits)
    connections: int = 0
    inbound: int = 0  # bytes of incomplete inbound frames, every connection
    outbound: int = 0  # bytes of output waiting in user space, every connection
    evicted: int = 0  # connections evicted to make room, since the start
    _per_address: Counter[str] = field(default_factory=Counter)
    _cap: int = 0
    #: Connections without a session -> since when (time.monotonic()), oldest first.
    _waiting: OrderedDict[Waiting, float] = field(default_factory=OrderedDict)

    def __post_init__(self) -> None:
        self._cap = self.limits.connection_cap()

    @property
    def cap(self) -> int:
        """The connection cap in force."""
        return self._cap

    def set_aside(self, descriptors: int) -> None:
        """A listener will hold up to ``descriptors`` connections this Guard cannot count
        (grpc-core's raw connections): when the cap comes from the descriptor limit, it
        shrinks by as many, so that all of them together still fit in the limit (a full
        server refuses instead of failing ``accept()`` with EMFILE). A cap set by hand
        (``max_connections``) is the operator's: it stays."""
        if self.limits.max_connections is None:
            self._cap = max(16, self._cap - descriptors)

    # -- connections ----------------------------------------------------------------------
    def admit(self, address: str | None) -> Refusal | None:
        """Count a new connection from ``address`` (an IP), or say why it may not stay. When
        the cap is full, the connection that has waited longest without a session makes room
        (see the module docstring)."""
        per = self.limits.max_connections_per_address
        if address is not None and self._per_address[address] >= per:
            return Refusal(f"too many connections from {address} ({per} at most); close some first")
        if self.connections >= self._cap and not self._make_room():
            return Refusal(f"the server is full ({self._cap} connections); try again later")
        if address is not None:
            self._per_address[address] += 1
        self.connections += 1
        return None

    def _make_room(self) -> bool:
        """Evict the connection that has waited longest without a session, if it has waited
        ``eviction_grace``; True when a place was given back."""
        waiting = self._waiting
        now = time.monotonic()
        for _ in range(EVICT_TRIES):
            if not waiting:
                return False
            oldest, since = next(iter(waiting.items()))
            if now - since < self.limits.eviction_grace:
                return False
            del waiting[oldest]
            before = self.connections
            if oldest.evict(now - since):
                self.evicted += 1
                if self.connections < before:
                    return True
            else:  # busy (a login being checked): it waits anew, at the end
                waiting[oldest] = now
        return False

    def waiting(self, connection: Waiting) -> None:
        """``connection`` (admitted) has no session from now on: it may be evicted."""
        self._waiting.pop(connection, None)
        self._waiting[connection] = time.monotonic()

    def settled(self, connection: Waiting) -> None:
        """``connection`` has a session now, or is gone: it is never evicted."""
        self._waiting.pop(connection, None)

    @property
    def waiting_count(self) -> int:
        """Admitted connections without a session right now."""
        return len(self._waiting)

    def release(self, address: str | None) -> None:
        """The connection admitted from ``address`` has ended."""
        self.connections -= 1
        if address is not None:
            left = self._per_address[address] - 1
            if left > 0:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    def from_address(self, address: str) -> int:
        """Open connections from ``address`` right now."""
        return self._per_address.get(address, 0)

    # -- bytes ----------------------------------------------------------------------------
    def reserve_inbound(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the inbound budget; False (nothing taken) when it is spent."""
        if self.inbound + nbytes > self.limits.inbound_budget:
            return False
        self.inbound += nbytes
        return True

    def hold_inbound(self, nbytes: int) -> bool:
        """Count ``nbytes`` that are already held (received, not yet a whole frame): unlike
        ``reserve_inbound`` this cannot be refused, since the bytes are in memory. False when
        the total is now past the budget: the caller should drop them (close that connection)
        and give them back."""
        self.inbound += nbytes
        return self.inbound <= self.limits.inbound_budget

    def give_back_inbound(self, nbytes: int) -> None:
        self.inbound -= nbytes

    def reserve_outbound(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the outbound budget; False (nothing taken) when it is spent."""
        if self.outbound + nbytes > self.limits.outbound_budget:
            return False
        self.outbound += nbytes
        return True

    def give_back_outbound(self, nbytes: int) -> None:
        self.outbound -= nbytes


def peer_host(peername: object) -> str | None:
    """The IP of an asyncio ``peername`` extra (``(host, port, ...)``), None for others."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None
