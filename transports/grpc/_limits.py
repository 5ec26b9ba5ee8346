"""Server-side bounds of both gRPC transports (``grpc`` and ``grpc-stream``), from ServerLimits.

Theory of operation
  * **Connections.** grpc.aio gives Python no hook per TCP connection, so the server's caps work
    at two levels. The C core bounds raw connections per listener (``server_options``): at most
    ``Guard.cap`` of them (``grpc.max_allowed_incoming_connections``: the core closes one over
    the quota at once, which the client sees as a bare UNAVAILABLE), an HTTP/2 handshake must
    finish within HANDSHAKE_TIMEOUT_MS, and a connection with no rpc for the idle timeout is
    closed (``grpc.max_connection_idle_ms``; an open push stream is an rpc, so live sessions are
    never idle). The Guard, shared with every other transport, counts *sessions*: on ``grpc`` a
    token's session from its Signup/Login to its end, on ``grpc-stream`` a Connect call. The
    client's IP comes from ``context.peer()``. A refusal is RESOURCE_EXHAUSTED with the
    ``OVERLOADED`` reason and the Guard's sentence. Honest limit: one HTTP/2 connection may carry
    many sessions (up to MAX_STREAMS_PER_CONNECTION streams), and many connections may carry
    none; the per-address cap bounds what a host may make the server *hold* (sessions, their
    queues, their streams), while raw connections are bounded only per listener.
  * **Overload (defect 8).** grpc.aio takes calls from the C core on the event loop, one
    outstanding request at a time (every method shares it: _services). When calls arrive faster
    than the loop takes them, they wait in the core's queue, and past
    ``grpc.server.max_pending_requests`` (default 1,000, dropping at random up to the hard limit
    of 3,000) the core kills new calls with a bare CANCELLED, no reason and no log: that was the
    1.6-12 % of sends lost at 1,000 sends/s with 1,000 sessions. Here the core's queue may hold
    PENDING_CALLS calls (bounded in memory by the connection and stream caps), so nothing
    vanishes, and :class:`LoadMeter` keeps it short: it measures how long a call waits (a probe
    through that queue, and the loop's own lag), and past OVERLOAD_LAG (0.2 s) a request that
    creates work (Send, Signup, Login, reads) is refused with RESOURCE_EXHAUSTED
    (``OVERLOADED``) and a sentence saying so, before the core is called, with a probability
    that grows with the wait. So is any such request once MAX_CALLS_IN_FLIGHT are being served,
    or whose deadline passed while it waited (its caller has given up: doing the work would
    store a message its sender was told had failed). Nothing was stored, so a retry cannot
    duplicate. Acks, logouts and deletions are always served: they free state. Refusing costs a
    fraction of serving (no store, no push, no ack follows), so the server serves what it can
    and refuses the rest, in words.
  * **Slow consumers.** A push stream whose write makes no progress for ``stall_timeout``
    (the client stopped reading: HTTP/2 flow control holds the write) ends its session as a
    slow consumer at once, instead of after MAX_SESSION_QUEUE queued messages. What such a
    client pins: the core's queue for the session (core's byte bound), one message in grpc-core,
    and the kernel's socket buffers up to the client's HTTP/2 window.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import re
import time
from collections.abc import Awaitable, Callable

from transports._guard import Guard, Refusal, ServerLimits
from transports.grpc._wire import SERVER_OPTIONS

log = logging.getLogger(__name__)

#: Milliseconds a new connection has to finish its handshake (grpc's default is 120 s, which
#: lets a slowloris hold a descriptor for two minutes with one SYN's worth of effort).
HANDSHAKE_TIMEOUT_MS = 10_000
#: HTTP/2 streams one connection may have open at once (SETTINGS_MAX_CONCURRENT_STREAMS). A
#: session needs its push stream plus a few calls in flight; RFC 9113 advises no fewer than
#: 100. A client over it waits (its library queues the call), it is not refused.
MAX_STREAMS_PER_CONNECTION = 100
#: Keepalive enforcement: a client may ping at most this often while no data flows; each ping
#: sooner is a strike, and past MAX_PING_STRIKES the server ends the connection with GOAWAY
#: ENHANCE_YOUR_CALM ("too_many_pings"). A client pinging every 10 s or more is well within it.
MIN_CLIENT_PING_INTERVAL_MS = 10_000
MAX_PING_STRIKES = 2
#: Calls the C core may hold before the loop takes them (grpc's default soft limit is 1,000,
#: hard 3,000, with silent CANCELLED in between). Set soft = hard so nothing is dropped at
#: random below it; 20,000 x a small call (~2 KB in the core) is ~40 MB, and every call needs
#: a stream, so MAX_STREAMS_PER_CONNECTION and the connection cap bound it too.
PENDING_CALLS = 20_000
#: Seconds a call may wait for the server (in grpc-core's queue, by LoadMeter's probe, or for
#: a stalled loop) before requests that create work are refused as OVERLOADED, more of them the
#: longer the wait (up to MAX_SHED, reached at 1.5 times this). A healthy server answers in
#: < 5 ms. The default of ``ServerLimits.shed_lag``, which the listeners hand to LoadMeter
#: (the other transports shed their searches there; ``wirechat server --shed-lag``). At 1 s,
#: the hostile scene's gRPC load (400 sends a second) ended 17,696 of 36,000 sends in the
#: client's deadline and only 220 in a refusal, while the loop it shares with every custom
#: session ran behind: a wait of 0.2 s already misses the canary's 50 ms four times over,
#: and is far inside a client's deadline (ours: 10 s).
OVERLOAD_LAG = 0.2
#: The largest share of requests refused for load. Refusing a gRPC call costs most of what
#: serving a small one does (grpc's per-call work dominates: measured 1,306 vs 1,536 us of
#: client+server CPU for a refused vs a served 32-byte Send), so refusing everything would not
#: let the server catch up, only stop it doing useful work: at least half is still served.
MAX_SHED = 0.5
#: Requests (unary rpcs, or ChatStream requests) being served at once before more are refused
#: as OVERLOADED: each may hold a request of up to MAX_MESSAGE_BYTES (75 KB) while it waits for
#: the store, so 2,048 bound that to ~150 MB; a healthy server has a few dozen in flight.
MAX_CALLS_IN_FLIGHT = 2048
#: How often LoadMeter samples the loop, and the weight of each sample in the smoothed lag.
SAMPLE_INTERVAL = 0.05
SAMPLE_WEIGHT = 0.3
#: The queue probe (LoadMeter): one call through the server's own queue at most this
#: often, and only while the server takes at least PROBE_BUSY calls per interval (an idle or
#: lightly used server, under 100 calls a second, sends no probes: nothing on the wire,
#: nothing in the bench's byte counts). One call in flight is already busy by this measure
#: (~2,000 calls a second), so the bench's gRPC latency rows carry a probe every 0.1 s: ~0.4 ms
#: of server CPU each, a few µs a call (a paired A/B of our server with and without it, stop
#: 32: -4.5 [-10.7, -0.3] µs of server CPU a call, p50 not moved).
PROBE_INTERVAL = 0.1
PROBE_BUSY = 10
PROBE_TIMEOUT = 60.0


#: The share of the descriptor-derived connection cap one gRPC listener's raw connections may
#: take (grpc-core's own quota; the Guard cannot see them, so ``Guard.set_aside`` takes them off
#: its cap): with 20,000 descriptors, 1,993 gRPC connections, and an idle flood of the other
#: transports can no longer push the process into EMFILE (it reached 20,000 of 20,000).
#: A cap set by hand (``--max-connections``) is used whole, as before.
RAW_CONNECTION_SHARE = 0.1


def raw_connections(limits: ServerLimits, cap: int) -> int:
    """How many TCP connections grpc-core may hold for one listener, given the Guard's cap."""
    if limits.max_connections is not None:
        return cap
    return max(64, int(cap * RAW_CONNECTION_SHARE))


def server_options(limits: ServerLimits, cap: int) -> tuple[tuple[str, int], ...]:
    """The grpc.aio server options: _wire's, plus the bounds above and the raw connection
    quota (``raw_connections``)."""
    idle_ms = max(1, round(limits.idle_timeout * 1000))
    return (
        *SERVER_OPTIONS,
        ("grpc.max_allowed_incoming_connections", raw_connections(limits, cap)),
        ("grpc.server_handshake_timeout_ms", HANDSHAKE_TIMEOUT_MS),
        ("grpc.max_connection_idle_ms", idle_ms),
        ("grpc.max_concurrent_streams", MAX_STREAMS_PER_CONNECTION),
        ("grpc.http2.min_ping_interval_without_data_ms", MIN_CLIENT_PING_INTERVAL_MS),
        ("grpc.http2.max_ping_strikes", MAX_PING_STRIKES),
        ("grpc.server.max_pending_requests", PENDING_CALLS),
        ("grpc.server.max_pending_requests_hard_limit", PENDING_CALLS),
    )


_PEER = re.compile(r"^ipv[46]:\[?(?P<host>[^\]]*?)\]?:\d+$")


def peer_ip(peer: str | None) -> str | None:
    """The IP of a grpc peer string ('ipv4:127.0.0.1:5555', 'ipv6:[::1]:5555'); None for
    others (unix sockets, in-process)."""
    if not peer:
        return None
    match = _PEER.match(peer)
    return match["host"] if match else None


class LoadMeter:
    """How far behind the server runs (see the module docstring, "Overload"): the larger of the
    event loop's lag and the wait in grpc-core's queue of calls.

    The queue is invisible to Python, so it is measured the way CoDel measures a queue, by a
    packet's sojourn: while the server is busy, a probe (a call the server sends itself,
    through its own queue of calls: a Send without a token, refused at once)
    is kept outstanding, and how long it has been waiting, or took, is how long a call waits
    for the loop right now.
    """

    def __init__(
        self,
        limit: float = OVERLOAD_LAG,
        probe: Callable[[], Awaitable[object]] | None = None,
    ) -> None:
        self.limit = limit
        self.lag = 0.0  # seconds, smoothed
        self.calls = 0  # calls taken since the last probe decision (the servicer counts them)
        self._probe = probe
        self._probing: asyncio.Task[object] | None = None
        self._probe_sent = 0.0
        self._probe_took = 0.0  # the last finished probe's time in the queue
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._sample_forever(), name="grpc-load-meter")

    async def stop(self) -> None:
        for task in (self._task, self._probing):
            if task is not None:
                task.cancel()
                with contextlib.suppress(BaseException):
                    await task
        self._task = self._probing = None

    def refusal(self) -> Refusal | None:
        """Why a request that creates work must wait, or None when the server keeps up.

        Past the limit a request is refused with a probability that grows with the excess, up
        to MAX_SHED (reached at 1.5 times the limit), as RED does for packets: the server then
        settles where it serves what it can and refuses the rest, instead of swinging between
        refusing everything and queueing everything.
        """
        excess = self.lag - self.limit
        if excess <= 0 or random.random() * self.limit >= min(excess, MAX_SHED * self.limit):
            return None
        return Refusal(
            f"the server is overloaded (requests wait {self.lag * 1000:.0f} ms); "
            "nothing was done: try again in a moment"
        )

    def note(self, lag: float) -> None:
        """Fold one sample in. A sample above the limit counts at once (a stalled loop has
        just queued a burst of calls: they must be refused now, not after several samples)."""
        if lag > self.limit:
            self.lag = max(self.lag, lag)
        else:
            self.lag += SAMPLE_WEIGHT * (lag - self.lag)

    def queue_wait(self, now: float) -> float:
        """How long calls wait in grpc-core's queue, by the probe (0 without one); sends a
        new probe when the last one is back, the interval has passed and the server is busy."""
        if self._probe is None:
            return 0.0
        probing = self._probing
        if probing is not None and not probing.done():
            return max(self._probe_took, now - self._probe_sent)  # still waiting: its age
        if now - self._probe_sent >= PROBE_INTERVAL:
            busy = self.calls >= PROBE_BUSY
            self.calls = 0
            if busy:
                self._probe_sent = now
                self._probing = asyncio.create_task(self._send_probe(), name="grpc-queue-probe")
            else:
                self._probe_took = 0.0
        return self._probe_took

    async def _send_probe(self) -> object:
        assert self._probe is not None
        try:
            return await self._probe()
        except Exception as exc:  # a probe failing says nothing about the queue
            log.debug("queue probe failed: %r", exc)
            return None
        finally:
            self._probe_took = time.monotonic() - self._probe_sent

    async def _sample_forever(self) -> None:
        clock = time.monotonic
        while True:
            before = clock()
            await asyncio.sleep(SAMPLE_INTERVAL)
            now = clock()
            self.note(max(now - before - SAMPLE_INTERVAL, self.queue_wait(now), 0.0))


class Admission:
    """The Guard plus the LoadMeter of one gRPC listener: who may start a session, and whether
    a request that creates work may start now (``busy``)."""

    def __init__(self, guard: Guard, meter: LoadMeter) -> None:
        self.guard = guard
        self.meter = meter
        # grpc-core holds this listener's raw connections outside the Guard's count (the same
        # quota ``server_options`` gave it, computed from the same cap)
        guard.set_aside(raw_connections(guard.limits, guard.cap))
        self.in_flight = 0  # requests being served (the caller counts them)

    def busy(self, time_left: float | None = None) -> Refusal | None:
        """Why a request that creates work must not start now, or None. ``time_left``: the
        call's ``context.time_remaining()`` (None: no deadline)."""
        meter = self.meter
        meter.calls += 1
        if time_left is not None and time_left <= 0:
            return Refusal(
                "the request waited in the server's queue past its deadline; nothing was done"
            )
        if self.in_flight >= MAX_CALLS_IN_FLIGHT:
            return Refusal(
                f"the server is overloaded ({self.in_flight} requests in progress); "
                "nothing was done: try again in a moment"
            )
        # (on the path of every request: the meter is asked only when it runs behind)
        return None if meter.lag <= meter.limit else meter.refusal()

    def admit(self, ip: str | None, time_left: float | None = None) -> Refusal | None:
        """Count a new session from ``ip``, or say why not (overloaded, full, too many)."""
        return self.busy(time_left) or self.guard.admit(ip)

    def release(self, ip: str | None) -> None:
        self.guard.release(ip)


__all__ = [
    "HANDSHAKE_TIMEOUT_MS",
    "MAX_CALLS_IN_FLIGHT",
    "MAX_STREAMS_PER_CONNECTION",
    "OVERLOAD_LAG",
    "PENDING_CALLS",
    "RAW_CONNECTION_SHARE",
    "Admission",
    "LoadMeter",
    "peer_ip",
    "raw_connections",
    "server_options",
]
