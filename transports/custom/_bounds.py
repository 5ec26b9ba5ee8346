"""The bounds of issue 14 on one custom-protocol server connection (and its server).

Theory of operation (``transports._guard.ServerLimits`` holds the numbers and their reasons;
docs/LIMITS.md "Connections and bytes" and PROTOCOL.md section 9.7 say what a client sees)
  * Accepting (``_accept.Acceptor``): the listener takes at most ``accepts_per_turn``
    connections from the kernel's queue per loop iteration, and refuses at the accept, on
    the bare socket, what the Guard would refuse once the lingering refusals are spent.
  * Admission (``_admit``): the process-wide ``Guard`` counts connections in all and per client
    address; a refused connection is answered with ERROR SERVER_BUSY and closed. An admitted
    socket gets a small ``SO_SNDBUF``, so the kernel cannot hide megabytes of unread output.
  * Under pressure (``evict``): a connection without a logged-in session is *waiting* for the
    Guard (from admission, again from WELCOME and from each logout, until a login); when the
    cap is full, a new connection evicts the one that has waited longest (past the Guard's
    grace): ERROR TIMED_OUT with the reason, the socket closed at once and its place given
    back before the newcomer is counted. Never one whose request is in progress, never one
    with a session (docs/LIMITS.md, "When the server is full").
  * Fair turns: the driver handles at most ``requests_per_turn`` requests, or TURN_SECONDS of
    them, per turn; then ``_yield_turn`` stops reading and the next turn runs at the next loop
    iteration (``call_soon``), after every other ready connection. An ACK has no reply, so
    backpressure alone never stopped a client pipelining ACKs: it froze the loop for seconds.
  * Reading is paused for two reasons, either of them: a request in progress (the driver's
    blocker), a yielded turn; ``_update_reading`` is the one place that pauses or resumes the
    transport, so one reason ending never undoes the other.
  * Inbound bytes (``_count_inbound``): after each turn, what the codec still holds (an
    incomplete frame, or frames a blocker left) is counted against the guard's inbound
    budget. A connection whose bytes take the server past the budget is closed with ERROR
    SERVER_BUSY, which frees them at once. (Pausing it instead would keep them: 20,000
    connections that each sent most of a maximal frame pinned 2 GB.) Unless it has a
    session: then connections without one that hold bytes are closed first, oldest first
    (``Guard.shed_inbound``), so anonymous half-sent frames cannot get a user closed.
  * Outbound bytes: while a connection's output is paused (its own budget spent), what the
    transport holds counts against the guard's outbound budget. A connection that finds that
    budget spent is a slow consumer at once: ERROR SLOW_CONSUMER with the reason.
  * Refused at admission (``_refuse``): ERROR SERVER_BUSY, then a linger (the client reads
    the ERROR before the close) while the Guard allows (REFUSED_LINGERING of them), else
    closed at once: a refused connection holds a descriptor beyond the cap.
  * Frames before a login: at most ``max_frame_before_login`` bytes (``_limit_frames``, the
    codec refuses a longer one at its header with FRAME_TOO_LARGE); the protocol's
    MAX_FRAME from the login on, the small limit again from a logout.
  * Paced requests: ACK ids and the time LIST_ACCOUNTS calls take are paced per session by
    the service (``core.pacing``, for every transport); a paced request suspends like any
    other that waits, so the connection is not read meanwhile.
  * Overload: while the event loop runs ``shed_lag`` or more behind, the service refuses a
    LIST_ACCOUNTS at once (``core.pacing``, ``Overloaded``), answered with ERROR OVERLOADED
    (version 4; LIMIT_EXCEEDED to a version 1-3 connection, ``_errors.SENT_AS``) "the server
    is overloaded ...; nothing was done" (a request-level error: the session goes on), so the
    loop's time goes to the sessions'
    sends, acks and logins.
  * Time, with no timer per request or per frame: one ``Sweeper`` per server looks at every
    connection each period (``police``), SWEEP_SLICE of them per loop iteration, comparing
    timestamps that only state changes set:
    no session ``idle_timeout`` after WELCOME or LOGGED_OUT, a frame incomplete for
    ``partial_frame_timeout`` (both ERROR TIMED_OUT), and output waiting in the kernel with
    no byte acknowledged for ``stall_timeout`` (``KernelWatch``; a slow consumer), the latter
    only for connections that wrote since the last look or are being timed.
  * Mass events, spread over loop iterations (a flood makes thousands of connections do the
    same thing at once): each connection's idle and partial-frame timeouts are its own
    (times ``_stretch``, within ``timeout_spread`` of the setting), a sweep ends at most
    SWEEP_ENDS connections per iteration, and the EOFs of connections without a session are
    taken down ENDS_PER_TURN per iteration (``_end_later``, the server's ``Ends``).
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from core.service import ChatService
from core.session import Session, State
from core.types import CloseReason
from transports._guard import (
    Guard,
    Refusal,
    ServerLimits,
    peer_host,
    spread,
)
from transports._outbox import KernelWatch, Outbox
from transports.custom._codec import Codec
from transports.custom._events import Error
from transports.custom._wire import ErrorCode

log = logging.getLogger(__name__)

#: Seconds of requests one turn may handle (besides ``requests_per_turn``) before the
#: connection yields the loop: a store call can take milliseconds (an ACK of 1,024 ids on
#: SQLite ~2-4 ms here), so a count alone would let 64 of them hold the loop a quarter second.
TURN_SECONDS = 0.002
#: The longest pause between two looks at every connection (idle, partial frames, kernel
#: stalls); shorter when a timeout is shorter, so each fires within a quarter of itself. A
#: look costs a few microseconds per connection: 2.5 s keeps 20,000 connections near 1 % of
#: a CPU (1 s cost ~5 % in the hostile scene), and a 30 s timeout fires by 32.5 s.
SWEEP_PERIOD = 2.5
#: Connections looked at in one loop iteration (~0.5 ms of the loop, see ``Sweeper``).
SWEEP_SLICE = 512
#: Connections a sweep ends (idle, incomplete frame, stalled) in one loop iteration, at most:
#: each end writes an ERROR and shuts the socket (~0.1-0.2 ms on the loopback, where a write
#: runs the receiver's TCP too), so a slice full of them held the loop ~50-100 ms.
SWEEP_ENDS = 32
#: Connections without a session whose client closed, taken down per loop iteration (the
#: rest at the next ones, ``Ends``): the hostile scene's flood closed ~16,000 at once, and
#: the server handled every EOF in one iteration (the canary's worst stall, ~1.3 s).
ENDS_PER_TURN = 128


#: Seconds between two log lines of one kind about connections the bounds end or refuse (a
#: flood of connects must not become a flood of log lines): each says how many since the last.
REFUSAL_LOG_EVERY = 10.0


class _Quiet:
    """One kind of warning, logged at most once per REFUSAL_LOG_EVERY with a count."""

    def __init__(self, text: str, level: int = logging.WARNING) -> None:
        self.text, self.level, self.since, self.logged_at = text, level, 0, float("-inf")

    def __call__(self, now: float, detail: object) -> None:
        self.since += 1
        if now - self.logged_at >= REFUSAL_LOG_EVERY:
            log.log(self.level, "%s (%d since the last report): %s", self.text, self.since, detail)
            self.since, self.logged_at = 0, now


#: A client that broke the protocol (its connection gets the ERROR and closes). One line per
#: connection cost the server 6 % of its CPU in the hostile scene (its half-sent frames).
log_protocol_error = _Quiet("protocol errors from clients", logging.INFO)
log_refusal = _Quiet("refusing connections")
_log_inbound = _Quiet("closing connections past the server's inbound budget")
_log_evicted = _Quiet("the server is full: evicting connections without a session")


class Sweeper:
    """One periodic look at every connection of a server (``Bounded.police``), in slices of
    SWEEP_SLICE connections, one slice per loop iteration: with 20,000 connections a whole
    look took ~0.1 s of the loop at once, once a second (a canary saw it in its p99)."""

    def __init__(self, connections: Iterable[Bounded], limits: ServerLimits) -> None:
        self._connections = connections
        self._timer: asyncio.TimerHandle | asyncio.Handle | None = None
        self._todo: list[Bounded] = []  # the rest of the current look
        self._started = 0.0  # when the current look began (loop time)
        self.period = max(
            0.02,
            min(
                SWEEP_PERIOD,
                limits.idle_timeout / 4,
                limits.partial_frame_timeout / 4,
                limits.stall_timeout / 4,
            ),
        )

    def start(self) -> None:
        self._timer = asyncio.get_running_loop().call_later(self.period, self._sweep)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._todo = []

    def _sweep(self) -> None:
        loop = asyncio.get_running_loop()
        if not self._todo:  # a new look: at every connection there is now
            self._todo = list(self._connections)
            self._started = loop.time()
        todo = self._todo
        now = loop.time()
        ended = 0
        for _ in range(min(SWEEP_SLICE, len(todo))):
            connection = todo.pop()
            try:
                ended += connection.police(now)
            except Exception:  # a bug of ours: never let it stop the sweeps
                log.exception("checking connection %s failed", connection._peer)
            if ended >= SWEEP_ENDS:
                break  # (the rest of the slice at the next iteration)
        if todo:  # the next slice after whatever else is ready
            self._timer = loop.call_soon(self._sweep)
        else:
            wait = max(0.0, self._started + self.period - loop.time())
            self._timer = loop.call_later(wait, self._sweep)


class Ends:
    """EOFs of connections without a session, taken down ENDS_PER_TURN per loop iteration,
    in arrival order (one per server, like its ``Sweeper``; see ``Bounded._end_later``)."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self._todo: deque[Bounded] = deque()
        self._scheduled = False

    def add(self, connection: Bounded) -> None:
        self._todo.append(connection)
        if not self._scheduled:
            self._scheduled = True
            self.loop.call_soon(self._run)

    def _run(self) -> None:
        todo = self._todo
        for _ in range(min(ENDS_PER_TURN, len(todo))):
            connection = todo.popleft()
            try:
                connection.eof_received()  # (now for real: ``_end_later`` says no)
            except Exception:  # a bug of ours: never let it stop the others
                log.exception("ending connection %s failed", connection._peer)
        if todo:  # the next ones after whatever else is ready
            self.loop.call_soon(self._run)
        else:
            self._scheduled = False


class Bounded:
    """The bounds half of ``_server._ServerConnection`` (a mixin: it shares the connection's
    state; see the module docstring)."""

    if TYPE_CHECKING:  # what the connection provides
        _loop: asyncio.AbstractEventLoop
        _transport: asyncio.Transport | None
        _peer: Any
        _codec: Codec
        _outbox: Outbox
        _service: ChatService
        _session: Session
        _blocker: asyncio.Future[None] | None
        _closing: bool
        _eof: bool
        _handlers: dict[type, Any] | None

        def _handle_buffered(self, data: bytes | None = None) -> None: ...
        def _end_with(self, code: ErrorCode, message: str) -> None: ...
        def _begin_close(self) -> None: ...
        def _slow_consumer(self) -> None: ...
        def _reply(self, event: Any) -> None: ...
        def _finish(self) -> None: ...
        def eof_received(self) -> bool: ...

    def _init_bounds(self, guard: Guard, stall_timeout: float, ends: Ends) -> None:
        self._guard = guard
        self._ends = ends  # (the server's: mass closes taken down in turn)
        self._limits = guard.limits
        self._host: str | None = None  # the client's IP, once admitted (release() takes it)
        self._admitted = False
        self._reading = True  # the transport reads (we paused it: False)
        self._yielded = False  # the turn ended early; the next one is scheduled
        self._held_in = 0  # bytes counted against the guard's inbound budget
        self._held_out = 0  # bytes counted against the guard's outbound budget
        self._idle_since: float | None = None  # no logged-in session since (after WELCOME)
        self._anonymous = True  # no logged-in session (its inbound bytes may be shed)
        self._partial_since: float | None = None  # an incomplete frame waits since
        self._kernel = KernelWatch(None, stall_timeout)
        self._seen_batches = 0  # the outbox's batches at the last look
        self._lingering_refused = False  # refused, lingering, counted by the guard
        self._eof_queued = False  # its EOF waits its turn (``_end_later``)
        # (this connection's own factor for its idle and partial-frame timeouts)
        self._stretch = spread(self._limits.timeout_spread)
        self._limit_frames(True)

    def _admit(self, transport: asyncio.Transport) -> Refusal | None:
        """Count this connection against the caps (or say why not); size its send buffer."""
        host = peer_host(self._peer)
        refusal = self._guard.admit(host)
        if refusal is not None:
            log_refusal(self._loop.time(), refusal)
            return refusal
        self._admitted, self._host = True, host
        self._guard.waiting(self, host)  # (no session yet: may be evicted when the server is full)
        sock = transport.get_extra_info("socket")
        if sock is not None:
            try:  # the kernel holds at most this much unread output (see ServerLimits)
                sock.setsockopt(
                    socket.SOL_SOCKET, socket.SO_SNDBUF, self._limits.socket_send_buffer
                )
            except OSError:
                pass
            self._kernel = KernelWatch(sock, self._kernel.timeout)
        return None

    def _refuse(self, refusal: Refusal) -> None:
        """``_admit`` refused this connection: ERROR SERVER_BUSY with the reason, then close,
        lingering while the guard allows (see the module docstring)."""
        self._reply(Error(0, ErrorCode.SERVER_BUSY, str(refusal)))
        if self._guard.linger_refused():
            self._lingering_refused = True
            self._begin_close()
        else:
            self._finish()  # (at once: its descriptor is not counted by the cap)

    def _release(self) -> None:
        """The connection is gone: give back everything it counted, and drop its table of
        request handlers (bound methods of this connection: a reference cycle, which only
        a full collection would free, and not at all once the collector froze it)."""
        self._handlers = None
        self._give_back()
        if self._lingering_refused:
            self._lingering_refused = False
            self._guard.refused_gone()
        if self._admitted:
            self._admitted = False
            self._guard.settled(self)
            self._guard.release(self._host)

    def evict(self, waited: float) -> bool:
        """``Guard.admit`` found the server full, and this connection has waited longest
        without a session: ERROR TIMED_OUT with the reason, close now (no lingering: its
        place and descriptor go to the new connection) and give its place back. Not while a
        request of it is in progress (a login being checked): False."""
        if self._blocker is not None and not self._closing:
            return False
        if not self._closing:
            _log_evicted(self._loop.time(), f"{self._peer} after {waited:.1f} s")
            self._reply(
                Error(
                    0,
                    ErrorCode.TIMED_OUT,
                    f"no login within {waited:.0f} s while the server is full; reconnect",
                )
            )
        self._finish()  # (writes what is buffered, then closes the socket)
        self._release()
        return True

    def _waiting(self, waiting: bool) -> None:
        """The connection has (False) or has no (True) logged-in session from now on."""
        self._anonymous = waiting
        self._limit_frames(waiting)
        if not self._admitted:
            return
        if waiting:
            self._guard.waiting(self, self._host)
        else:
            self._guard.settled(self)
            self._guard.holds_inbound(self, False)  # (its bytes are a user's now: kept)

    def _limit_frames(self, anonymous: bool) -> None:
        """Frames of a connection without a session are small (``max_frame_before_login``)."""
        self._codec.limit_frames(self._limits.max_frame_before_login if anonymous else None)

    def pause_writing(self) -> None:
        self._outbox.pause()
        # The output is paused: what it holds counts against the server-wide budget. A slow
        # reader that finds that budget spent is a slow consumer now (not in stall_timeout).
        transport = self._transport
        held = transport.get_write_buffer_size() if transport is not None else 0
        if self._guard.reserve_outbound(held):
            self._held_out = held
        elif not self._closing:
            self._loop.call_soon(self._out_of_budget)  # (not inside the transport's write)

    def resume_writing(self) -> None:
        if self._held_out:
            self._guard.give_back_outbound(self._held_out)
            self._held_out = 0
        self._outbox.resume()

    def _yield_turn(self) -> None:
        """This turn has done its share: stop reading, go on at the next loop iteration."""
        self._yielded = True
        self._update_reading()
        self._loop.call_soon(self._next_turn)

    def _next_turn(self) -> None:
        self._yielded = False
        if self._closing or self._transport is None:
            return
        self._update_reading()
        if self._blocker is None:
            self._handle_buffered()

    def _count_inbound(self) -> None:
        """After a turn: count what the codec still holds against the inbound budget (stop
        reading when it is spent), and time an incomplete frame."""
        held = self._codec.buffered
        if held and self._blocker is None and not self._yielded:  # an incomplete frame
            if self._partial_since is None:
                self._partial_since = self._loop.time()
        else:
            self._partial_since = None
        more = held - self._held_in
        if more > 0:
            self._held_in = held
            # Past the budget: a connection with a session first takes the bytes of those
            # without one (oldest first); else it is the one closed (closing gives back).
            guard = self._guard
            if not guard.hold_inbound(more) and (self._anonymous or not guard.shed_inbound()):
                self._shed()
                return
        elif more < 0:
            self._held_in = held
            self._guard.give_back_inbound(-more)
        if self._anonymous and self._admitted:
            self._guard.holds_inbound(self, self._held_in > 0)

    def shed(self) -> None:
        """``Guard.shed_inbound``: a connection with a session needs the inbound bytes this
        one (without a session) holds: ERROR SERVER_BUSY, close, its bytes given back."""
        if not self._closing:
            self._shed()

    def _shed(self) -> None:
        _log_inbound(self._loop.time(), self._peer)
        self._end_with(
            ErrorCode.SERVER_BUSY,
            "the server is holding too many incomplete frames; try again later",
        )

    def _update_reading(self) -> None:
        """Read from the socket unless a request is in progress or the turn yielded; while
        closing, read (and discard) whatever comes."""
        transport = self._transport
        if transport is None or self._eof or transport.is_closing():
            return
        want = self._closing or not (self._blocker or self._yielded)
        if want is not self._reading:
            self._reading = want
            if want:
                transport.resume_reading()
            else:
                transport.pause_reading()

    def _out_of_budget(self) -> None:
        """Our paused output found the server-wide outbound budget spent: rather than hold
        more for a reader this slow, end its session now (its messages stay pending)."""
        if self._closing:
            return
        log.warning("%s: the server's output budget is spent; ending its session", self._peer)
        if not self._session.closed and self._session.state is not State.ANONYMOUS:
            self._service.close_session(self._session, CloseReason.SLOW_CONSUMER)
        self._end_with(
            ErrorCode.SLOW_CONSUMER,
            "the server is holding too much unread output; your unacknowledged messages "
            "stay pending for your next login",
        )

    def police(self, now: float) -> bool:
        """The server's periodic look (``Sweeper``): end this connection if it broke a time
        bound (see the module docstring); whether it did. The idle and partial-frame timeouts
        are this connection's own (times its ``_stretch``), so a burst of connections does
        not time out in one burst."""
        if self._closing or self._blocker is not None:
            return False
        limits_ = self._limits
        since = self._partial_since
        if since is not None and now - since >= limits_.partial_frame_timeout * self._stretch:
            log.debug("%s: a frame stayed incomplete; closing", self._peer)
            self._end_with(
                ErrorCode.TIMED_OUT,
                f"a frame stayed incomplete for {now - since:.0f} s",
            )
            return True
        since = self._idle_since
        if since is not None and now - since >= limits_.idle_timeout * self._stretch:
            log.debug("%s: no session within the idle timeout; closing", self._peer)
            self._end_with(ErrorCode.TIMED_OUT, f"no login within {now - since:.0f} s; reconnect")
            return True
        batches = self._outbox.batches
        if batches != self._seen_batches or self._kernel.watching:
            self._seen_batches = batches
            if self._kernel.stalled(now):
                log.warning("%s reads nothing (its kernel buffers are full)", self._peer)
                self._slow_consumer()
                return True
        return False

    def _end_later(self) -> bool:
        """``eof_received``: the client of a connection without a session closed. True: its
        end is queued, to run in turn with the others' (``Ends``, ENDS_PER_TURN per loop
        iteration: a flood's mass close is not one long iteration). False: end it now (it
        has a session, a request in progress, TLS, or this is its queued turn)."""
        if self._eof_queued or not self._anonymous or self._blocker is not None:
            return False
        transport = self._transport
        if transport is None or transport.get_extra_info("sslcontext") is not None:
            return False
        self._eof_queued = self._eof = True
        self._ends.add(self)
        return True

    def _give_back(self) -> None:
        """Return this connection's share of the byte budgets (it reads and queues no more)."""
        self._guard.holds_inbound(self, False)
        if self._held_in:
            self._guard.give_back_inbound(self._held_in)
            self._held_in = 0
        if self._held_out:
            self._guard.give_back_outbound(self._held_out)
            self._held_out = 0


__all__ = [
    "ENDS_PER_TURN",
    "SWEEP_ENDS",
    "SWEEP_PERIOD",
    "SWEEP_SLICE",
    "TURN_SECONDS",
    "Bounded",
    "Ends",
    "Sweeper",
    "log_protocol_error",
    "log_refusal",
]
