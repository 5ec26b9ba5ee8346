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

Nothing here does IO or imports a transport: it is arithmetic on counters, one event loop.
"""

from __future__ import annotations

import resource
from collections import Counter
from dataclasses import dataclass, field

#: File descriptors kept out of the connection cap for the store, logs, the listeners
#: themselves and the executor's threads.
FD_RESERVE = 64


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


@dataclass
class Guard:
    """The counters behind ``ServerLimits`` for one server process (see the module docstring)."""

    limits: ServerLimits = field(default_factory=ServerLimits)
    connections: int = 0
    inbound: int = 0  # bytes of incomplete inbound frames, every connection
    outbound: int = 0  # bytes of output waiting in user space, every connection
    _per_address: Counter[str] = field(default_factory=Counter)
    _cap: int = 0

    def __post_init__(self) -> None:
        self._cap = self.limits.connection_cap()

    @property
    def cap(self) -> int:
        """The connection cap in force."""
        return self._cap

    # -- connections ----------------------------------------------------------------------
    def admit(self, address: str | None) -> Refusal | None:
        """Count a new connection from ``address`` (an IP), or say why it may not stay."""
        if self.connections >= self._cap:
            return Refusal(f"the server is full ({self._cap} connections); try again later")
        if address is not None:
            per = self.limits.max_connections_per_address
            if self._per_address[address] >= per:
                return Refusal(
                    f"too many connections from {address} ({per} at most); close some first"
                )
            self._per_address[address] += 1
        self.connections += 1
        return None

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
