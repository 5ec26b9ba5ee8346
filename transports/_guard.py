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
    Connections without a session that hold inbound bytes are listed (``holds_inbound``):
    when one with a session goes past the inbound budget, they are closed first, oldest
    first (``shed_inbound``).
  * Under pressure, waiting gives way (docs/LIMITS.md, "When the server is full"): a
    connection without a logged-in session is *waiting* (``waiting``, from its admission or
    its logout, until ``settled`` at its login), grouped by its client address. When the cap
    is full, ``admit`` makes room by evicting a waiting connection (``Waiting.evict``: the
    transport says why in its protocol and gives its place back at once), chosen so that
    addresses share the waiting places fairly:
      1. from the address with the most waiting connections, its oldest, when that address
         has at least twice what the newcomer's address would have (an address well under
         its share takes from the one most over it, whatever their age);
      2. else, when the newcomer's address has none waiting, the oldest waiting connection
         of any address, if it has waited at least ``eviction_grace``;
      3. else the newcomer is refused.
    So 20,000 idle sockets from 253 addresses cannot keep a new client from a fresh address
    out (1), and their own reconnections cannot churn them: a newcomer from an address that
    already holds its share is refused at once (3), which costs the server far less than an
    eviction plus a WELCOME (with the rule "evict the oldest past the grace" alone, the
    flood replaced its evicted sockets as fast as the server accepted, and an honest
    connect queued seconds behind ~2,000 of its connects in the listen backlog).
    Connections with a session are never evicted. The waiting connections are dicts in the
    order they started waiting, and the addresses are ranked by count in buckets: finding
    a victim is O(1), nothing is scanned.

  * Overload (``note_lag``, ``lag``): the server's loop-lag watch (wirechat/server.py)
    tells the Guard how late the event loop runs. Past ``shed_lag`` (smoothed), new work that
    can wait and costs the loop most is refused with the transport's overload answer and a
    sentence, so the sessions' sends, acks and logins get the loop: account searches on
    every transport by the service (``core.pacing``, handed ``lag`` by wirechat/server.py;
    core.errors.Overloaded: custom/protobuf-tcp ERROR OVERLOADED from version 4, WebSocket
    OVERLOADED from 2.2, each LIMIT_EXCEEDED with the sentence to an older client; gRPC
    RESOURCE_EXHAUSTED ``OVERLOADED``), and every gRPC request that creates work by
    grpc/_limits. Nothing was done, nothing is lost.
    Past the lower ``crowd_lag``, new connections from crowded addresses wait (parked by
    the custom listeners, a few set up per iteration) while a person's are set up at once.

Nothing here does IO or imports a transport: it is arithmetic on counters, one event loop.
"""

from __future__ import annotations

import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from core.pacing import ACK_IDS_PER_SECOND, LIST_ACCOUNTS_SHARE

#: File descriptors kept out of the connection cap for the store, logs, the listeners
#: themselves and the executor's threads.
FD_RESERVE = 64
#: Connections refused at admission (not counted: they never had a place) that may linger
#: at once, each holding its descriptor for up to 2 s so that its ERROR is read before the
#: close (PROTOCOL.md section 9.5). Past this, a refused connection is closed at once after
#: its ERROR: 1,000 storm connects refused while the cap was full lingered with 1,000
#: descriptors beyond it, accept() failed with EMFILE, and libuv then closed every
#: connection waiting in the listen backlog without a word.
REFUSED_LINGERING = 256
#: Connections without a session closed, at most, to fit one user's inbound bytes in the
#: budget (each held up to a maximal frame, 64 KiB; a user's frame is at most as large).
SHED_TRIES = 4
#: Waiting connections looked at, at most, to make room for one new connection: one whose
#: request is in progress (a login being checked) is skipped and counts as waiting anew.
EVICT_TRIES = 8
#: How much of the gap between the smoothed loop lag and a new sample below it one sample
#: closes (``Guard.note_lag``; a sample above it counts at once). Samples come every ~10 ms:
#: the lag decays to a tenth within ~0.2 s of the loop catching up.
LAG_WEIGHT = 0.1


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
    #: The spread of those two timeouts: each connection's are its own, drawn once from
    #: timeout x (1 +- timeout_spread) (``spread``), so 60 s is 45-75 s. Connections opened
    #: in one burst otherwise time out in one burst: the hostile scene's flood opened ~16,000
    #: in its first seconds, and 60 s later the server ended them all within one sweep, then
    #: took their reconnects (the canary's worst stalls, 5-10 s, were at 54-66 s).
    timeout_spread: float = 0.25
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
    #: SENDs of one connection waiting for their commit at once (pipelined: a send that waits
    #: for the store's group commit lets the connection read the next one; issue 10). 32
    #: fills a group of the SQLite writer from 8 connections (MAX_GROUP 256) and is four
    #: times the bench's closed-loop depth; past ~16 sends a group, a send's share of the
    #: COMMIT (~80 us here) is ~5 us of its ~90 us, so deeper pipelines only pin more memory.
    sends_in_flight: int = 32
    #: Bytes of SEND frames one connection may have waiting for their commit (the decoded
    #: bodies stay in memory until then), also counted against ``inbound_budget``. 256 KiB:
    #: four maximal sends, or the whole ``sends_in_flight`` of sends up to 8 KiB; like
    #: ``outbound_per_connection``, what one connection makes the server hold each way.
    send_bytes_in_flight: int = 256 * 1024
    #: The listen backlog: connections the kernel queues before we accept them (the kernel
    #: caps it at ``net.core.somaxconn``, 4,096 here). A connect past it is dropped (its SYN
    #: retried by the client 1, 3, 7 s later): with 100, 1,000 simultaneous connects left 51
    #: never accepted, and with 2,048 the hostile scene's flood (20,000 sockets for ~15,900
    #: places, each refused one reconnecting at once) kept it full, so the owner's connect
    #: waited 3 s (median) for its SYN to be taken. The custom listeners accept at most
    #: ``accepts_per_turn`` per loop iteration, so a long queue costs no descriptors.
    backlog: int = 4096
    #: Connections the custom listeners accept per loop iteration (``_bounds.Acceptor``); the
    #: rest stay in the kernel's queue for the next iteration. The event loop's own accept
    #: (libuv) takes every queued connection in one go, each a descriptor and a Python object
    #: before any is counted: the cap had to leave a whole backlog (2,048) of descriptors
    #: free, and one iteration set up every connection of a burst while each session waited
    #: (1,000 storm connects stalled the loop 121 ms with 512 per iteration). 16 is ~1.3 ms
    #: of set-up at ~80 us each, and still hundreds a second at any iteration length the
    #: hostile scene saw (2-50 ms). With 64 (until stop 24) a flood's iterations were four
    #: times as long, and a session's request waits two or three of them: in the hostile
    #: scene's first 10 s (the flood's 20,000 connects) 164-227 of the canary's 500 pushes
    #: took over 50 ms with 64, 61-129 with 32, 34 with 16 (docs/LIMITS.md, stop 24).
    accepts_per_turn: int = 16
    #: The listen backlog of a listener whose library accepts every queued connection at
    #: once (WebSocket's); with ``accepts_per_turn`` and REFUSED_LINGERING, the descriptors
    #: the connection cap leaves free for connections not yet counted (``connection_cap``).
    burst_backlog: int = 512
    #: Bytes of one frame a connection without a logged-in session may send (FRAME_TOO_LARGE
    #: at its header, before its body is read). The largest request before a login is a
    #: SIGNUP or LOGIN with a 128-character name of 4-byte characters and a 256-byte
    #: password, ~780 bytes; a full-size frame (96 KiB) before a login only served the
    #: hostile scene's half-sent frames (20,000 x 60 KB held, 905 MB read and dropped per
    #: run). 20,000 connections at this bound hold 20 MB, a third of ``inbound_budget``.
    max_frame_before_login: int = 1024
    #: ACK ids one session may acknowledge per second, on any transport (a second's worth
    #: saved up; more wait). The service paces them (``core.pacing``, which gives the reason
    #: for the number); ``wirechat server`` hands this to it.
    ack_ids_per_second: float = ACK_IDS_PER_SECOND
    #: Seconds of account-search work one session may use per second, on any transport (each
    #: search charged its time; one past the allowance waits). Paced by the service
    #: (``core.pacing`` gives the reason); ``wirechat server`` hands this to it.
    list_accounts_share: float = LIST_ACCOUNTS_SHARE
    #: Seconds a connection without a session is safe from eviction by a newcomer whose
    #: address has none waiting, when no address holds twice the newcomer's share (rule 2 of
    #: the module docstring; rule 1 takes from an address far over its share at any age). A
    #: client that logs in at once needs two round trips before its LOGIN is read (a login
    #: being checked is never evicted): 5 s covers a bad mobile link.
    eviction_grace: float = 5.0
    #: Seconds the event loop may run late (smoothed, ``Guard.note_lag``) before new work
    #: that can wait is refused as overloaded (module docstring, "Overload"). A healthy loop
    #: runs its timers within ~1-5 ms; the canary's target is a 50 ms p99, so 0.2 s is
    #: already four times too slow for everyone, and still far inside a client's patience
    #: and deadline (gRPC shed only from 1 s before: 17,696 of 36,000 sends of the hostile
    #: scene ended in their client's deadline instead of a refusal).
    shed_lag: float = 0.2
    #: Seconds the loop may run late (smoothed) before new connections from crowded
    #: addresses (``crowded`` connections without a session already) are parked and set up
    #: only a few per loop iteration (``custom._accept.Acceptor``): sessions' requests and a
    #: person's connect go first. 50 ms: the canary's target p99. With every connect of the
    #: hostile scene's flood set up as fast as it came, the loop ran late by 31-35 s in a
    #: 90 s window and the canary's median was 50-70 ms; parked, 14 s and 17 ms.
    crowd_lag: float = 0.05
    #: Connections without a session from one address that make it crowded (a person has
    #: one or two; the hostile scene's flood held ~80 per address).
    crowded: int = 8

    def connection_cap(self) -> int:
        """``max_connections`` or, when unset, what the descriptor limit allows: the limit
        minus FD_RESERVE, minus room for REFUSED_LINGERING and the connections accepted before
        any is counted (``burst_backlog``, at least ``accepts_per_turn``), that room at most a
        fifth of the descriptors (19,168 of 20,000 here; 768 of 1,024)."""
        if self.max_connections is not None:
            return self.max_connections
        usable = _fd_ceiling() - FD_RESERVE
        return max(16, usable - min(REFUSED_LINGERING + self.uncounted(), usable // 5))

    def uncounted(self) -> int:
        """Connections a listener may have accepted before the Guard counts them."""
        return max(self.burst_backlog, self.accepts_per_turn)


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a connection or a byte reservation was refused, in a person's words."""

    reason: str

    def __str__(self) -> str:
        return self.reason


class Holding(Protocol):
    """A connection without a session that holds incomplete inbound bytes."""

    def shed(self) -> None:
        """Close now, giving its inbound bytes back (``Guard.shed_inbound``)."""
        ...


class Waiting(Protocol):
    """A connection without a session, as the Guard sees it (each transport's connection)."""

    def evict(self, waited: float) -> bool:
        """The server is full and this connection has waited ``waited`` seconds without a
        session: tell the client why (in its protocol), close, and ``release`` its place now.
        False (nothing done) if it cannot go now: a request of it is in progress."""
        ...


class _Ranking:
    """Client addresses by their number of waiting connections, in buckets: which has the
    most is known at once, and a count moving by one moves one entry (O(1))."""

    __slots__ = ("_buckets", "_most")

    def __init__(self) -> None:
        self._buckets: dict[int, dict[str, None]] = {}  # count -> addresses with that count
        self._most = 0

    def moved(self, address: str, old: int, new: int) -> None:
        """``address`` had ``old`` waiting connections and has ``new`` now."""
        buckets = self._buckets
        if old:
            bucket = buckets[old]
            del bucket[address]
            if not bucket:
                del buckets[old]
        if new:
            buckets.setdefault(new, {})[address] = None
        if new > self._most:
            self._most = new
        elif old == self._most and old not in buckets:
            self._most = new  # (counts move by one: the next bucket down is ``new``'s, or none)

    def top(self) -> tuple[str, int] | None:
        """An address with the most waiting connections, and how many; None when none wait."""
        bucket = self._buckets.get(self._most)
        if not bucket:
            return None
        return next(iter(bucket)), self._most


@dataclass
class Guard:
    """The counters behind ``ServerLimits`` for one server process (see the module docstring)."""

    limits: ServerLimits = field(default_factory=ServerLimits)
    connections: int = 0
    inbound: int = 0  # bytes of incomplete inbound frames, every connection
    outbound: int = 0  # bytes of output waiting in user space, every connection
    evicted: int = 0  # connections evicted to make room, since the start
    lingering_refused: int = 0  # refused connections still open (see REFUSED_LINGERING)
    _per_address: Counter[str] = field(default_factory=Counter)
    _cap: int = 0
    #: Connections without a session -> (since when (time.monotonic()), client address),
    #: oldest first; and the same per client address (address -> connection -> since).
    _waiting: dict[Waiting, tuple[float, str | None]] = field(default_factory=dict)
    _groups: dict[str | None, dict[Waiting, float]] = field(default_factory=dict)
    _ranking: _Ranking = field(default_factory=lambda: _Ranking())
    #: Connections without a session holding incomplete inbound bytes, oldest first.
    _holders: dict[Holding, None] = field(default_factory=dict)
    #: How late the event loop runs, seconds, smoothed (``note_lag``; 0 with no watch).
    lag: float = 0.0
    #: Connections a listener accepted and holds, not set up yet (``park``): each holds a
    #: descriptor, so they count against the cap like admitted ones.
    parked: int = 0

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
        if self.connections + self.parked >= self._cap and not self._make_room(address):
            return Refusal(f"the server is full ({self._cap} connections); try again later")
        if address is not None:
            self._per_address[address] += 1
        self.connections += 1
        return None

    def would_refuse(self, address: str | None) -> Refusal | None:
        """What ``admit(address)`` would answer if it refuses, without counting or evicting
        anything; None when it would admit (possibly by evicting). A listener uses it to
        refuse at its accept, before it builds a connection (``_bounds.Acceptor``)."""
        per = self.limits.max_connections_per_address
        if address is not None and self._per_address[address] >= per:
            return Refusal(f"too many connections from {address} ({per} at most); close some first")
        full = self.connections + self.parked >= self._cap
        if full and self._victim(address, time.monotonic()) is None:
            return Refusal(f"the server is full ({self._cap} connections); try again later")
        return None

    def park(self) -> bool:
        """A listener would hold an accepted connection to set it up later: True (counted
        against the cap until ``unpark``) while the cap has room for it, else False."""
        if self.connections + self.parked >= self._cap:
            return False
        self.parked += 1
        return True

    def unpark(self) -> None:
        """A parked connection is being set up (its own ``admit`` counts it now) or closed."""
        self.parked -= 1

    def _make_room(self, address: str | None) -> bool:
        """Evict a waiting connection for a newcomer from ``address`` (module docstring, rules
        1-3); True when a place was given back."""
        now = time.monotonic()
        for _ in range(EVICT_TRIES):
            victim = self._victim(address, now)
            if victim is None:
                return False
            connection, since = victim
            held_by = self._forget(connection)
            before = self.connections
            if connection.evict(now - since):
                self.evicted += 1
                if self.connections < before:
                    return True
            else:  # busy (a login being checked): it waits anew, at the end
                self.waiting(connection, held_by)
        return False

    def _victim(self, address: str | None, now: float) -> tuple[Waiting, float] | None:
        """The waiting connection a newcomer from ``address`` may evict, and since when it
        waits; None: the newcomer is refused (module docstring)."""
        mine = len(self._groups.get(address, ()))
        top = self._ranking.top()
        if top is not None and top[1] >= 2 * (mine + 1):
            group = self._groups[top[0]]
            oldest = next(iter(group))
            return oldest, group[oldest]
        if mine == 0 and self._waiting:
            oldest, (since, _) = next(iter(self._waiting.items()))
            if now - since >= self.limits.eviction_grace:
                return oldest, since
        return None

    def waiting(self, connection: Waiting, address: str | None = None) -> None:
        """``connection`` (admitted, from ``address``) has no session from now on: it may be
        evicted. Without an address it takes part in rule 2 only (module docstring)."""
        self._forget(connection)
        now = time.monotonic()
        self._waiting[connection] = (now, address)
        group = self._groups.get(address)
        if group is None:
            group = self._groups[address] = {}
        group[connection] = now
        if address is not None:
            self._ranking.moved(address, len(group) - 1, len(group))

    def settled(self, connection: Waiting) -> None:
        """``connection`` has a session now, or is gone: it is never evicted."""
        self._forget(connection)

    def _forget(self, connection: Waiting) -> str | None:
        """Take ``connection`` off the waiting lists; returns its address."""
        entry = self._waiting.pop(connection, None)
        if entry is None:
            return None
        address = entry[1]
        group = self._groups[address]
        del group[connection]
        if not group:
            del self._groups[address]
        if address is not None:
            self._ranking.moved(address, len(group) + 1, len(group))
        return address

    @property
    def waiting_count(self) -> int:
        """Admitted connections without a session right now."""
        return len(self._waiting)

    def waiting_from(self, address: str | None) -> int:
        """Connections from ``address`` waiting without a session right now."""
        return len(self._groups.get(address, ()))

    def release(self, address: str | None) -> None:
        """The connection admitted from ``address`` has ended."""
        self.connections -= 1
        if address is not None:
            left = self._per_address[address] - 1
            if left > 0:
                self._per_address[address] = left
            else:
                del self._per_address[address]

    def linger_refused(self) -> bool:
        """A refused connection asks to linger until its client has read the ERROR: True
        (counted; ``refused_gone`` when it closes) while fewer than REFUSED_LINGERING do,
        else False: close it at once, its descriptor is needed more."""
        if self.lingering_refused >= REFUSED_LINGERING:
            return False
        self.lingering_refused += 1
        return True

    @property
    def lingering_full(self) -> bool:
        """REFUSED_LINGERING refused connections linger: the next refused closes at once."""
        return self.lingering_refused >= REFUSED_LINGERING

    def refused_gone(self) -> None:
        """A refused connection that ``linger_refused`` counted has closed."""
        self.lingering_refused -= 1

    def from_address(self, address: str) -> int:
        """Open connections from ``address`` right now."""
        return self._per_address.get(address, 0)

    # -- load -----------------------------------------------------------------------------
    def note_lag(self, late: float) -> None:
        """The loop ran a timer ``late`` seconds late: a sample above the smoothed lag counts
        at once (a stalled loop has just queued a burst of work), one below pulls it down by
        LAG_WEIGHT of the gap."""
        if late >= self.lag:
            self.lag = late
        else:
            self.lag += LAG_WEIGHT * (late - self.lag)

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

    def holds_inbound(self, connection: Holding, holding: bool) -> None:
        """``connection``, without a session, holds (or no longer holds) inbound bytes."""
        if holding:
            self._holders.setdefault(connection, None)  # (keeps its place: oldest first)
        else:
            self._holders.pop(connection, None)

    def shed_inbound(self) -> bool:
        """The inbound total is past its budget because of a connection *with* a session:
        close connections without one that hold inbound bytes, oldest first, until it fits
        (at most SHED_TRIES of them). True when it fits. A user's request is not refused for
        bytes that anonymous connections hold (the hostile scene's half-sent frames spent
        the budget, and each logged-in sender of a large message was then closed)."""
        holders = self._holders
        for _ in range(SHED_TRIES):
            if self.inbound <= self.limits.inbound_budget or not holders:
                break
            oldest = next(iter(holders))
            del holders[oldest]
            oldest.shed()
        return self.inbound <= self.limits.inbound_budget

    def reserve_outbound(self, nbytes: int) -> bool:
        """Take ``nbytes`` of the outbound budget; False (nothing taken) when it is spent."""
        if self.outbound + nbytes > self.limits.outbound_budget:
            return False
        self.outbound += nbytes
        return True

    def give_back_outbound(self, nbytes: int) -> None:
        self.outbound -= nbytes


def spread(spread: float) -> float:
    """A connection's own factor for its timeouts, uniform in [1 - spread, 1 + spread]
    (``ServerLimits.timeout_spread``)."""
    return 1.0 + spread * (2.0 * random.random() - 1.0)


def peer_host(peername: object) -> str | None:
    """The IP of an asyncio ``peername`` extra (``(host, port, ...)``), None for others."""
    if isinstance(peername, tuple) and peername and isinstance(peername[0], str):
        return peername[0]
    return None
