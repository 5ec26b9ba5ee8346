"""The lean load generator: open loop (and closed loop) over length-prefixed TCP echo, with no
task, future or histogram call per request, so it is not what limits the curves it draws.

Why a second generator. The general one (bench/load.py) awaits each request in its own task
through a client object; that costs it tens of µs of CPU per request, so on its one vCPU it
topped out near 60-80 k requests/s, below what the bare echo servers (``tcp_echo``,
``tcp_floor``) sustain: their curves showed the generator, not the server. This one speaks the
references' framing directly (a 4-byte big-endian length, then the payload, echoed back):

* requests due in one loop turn go out as one ``write`` per connection (``frame * k``);
* each connection keeps a FIFO of (intended, sent) times; replies come back in order, so a
  reply is matched by popping the FIFO, and one clock reading serves every reply of one read;
* timings are appended to plain lists and turned into histograms after the step.

The machine has two vCPUs: the server is pinned to one and the generator to the other (see
bench/procs.py). More generator processes would share that same vCPU, so the way to stay
ahead of the server is to be cheaper per request than it is, and to measure by how much: the
generator's own ceiling is measured against ``null_echo`` (bench/refs/null_echo.py), a
responder that writes back whatever bytes arrive, cheaper per request than any server.

Open loop keeps the same contract as bench/load.py: request ``i`` is intended at
``start + i / rate``; latency counts from the intended time; queueing (intended -> sent) and
service (sent -> reply) are kept apart, as Nighthawk does.
"""

from __future__ import annotations

import asyncio
import collections
import functools
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, TypedDict, Unpack, cast

from bench.load import DRAIN_POLL_S, SPIN_NS, LoadResult, OpenLoopSchedule
from bench.refs import HEADER_BYTES
from bench.stats import HIGHEST_NS, record_ns

#: Reference servers that speak the 4-byte length-prefixed echo, and so the lean generator.
LEAN_REFS = frozenset({"tcp_echo", "tcp_floor", "null_echo"})
#: Open loop: outstanding requests worth this much of the schedule mean "overloaded".
BACKLOG_S = 0.25
#: Samples per histogram recorded one by one; beyond, an evenly spaced subset with weights.
MAX_RECORDED = 200_000


@dataclass
class Timings:
    """Raw nanosecond samples of one step, turned into a LoadResult afterwards."""

    latency: list[int] = field(default_factory=list)  # reply - intended
    service: list[int] = field(default_factory=list)  # reply - sent
    lag: list[int] = field(default_factory=list)  # sent - intended
    last_done_ns: int = 0
    #: Called when the step's traffic is over, before the histograms are built.
    on_done: Callable[[], None] | None = None


class LeanEcho(asyncio.Protocol):
    """One connection: a FIFO of (intended, sent) per outstanding request, replies by count."""

    def __init__(self, timings: Timings, reply_size: int) -> None:
        self.timings = timings
        self.reply_size = reply_size
        self.pending: collections.deque[tuple[int, int]] = collections.deque()
        self.transport: asyncio.Transport | None = None
        self.buffered = 0  # bytes of a reply not yet complete
        self.lost: str | None = None
        #: Closed loop: on each reply, send this frame again at once (None: open loop).
        self.refill: bytes | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        # Every reply has the same size (the echo of one fixed frame): count, do not parse.
        total = self.buffered + len(data)
        replies, self.buffered = divmod(total, self.reply_size)
        if not replies:
            return
        now = time.perf_counter_ns()
        t = self.timings
        pending = self.pending
        for _ in range(replies):
            intended, sent = pending.popleft()
            t.latency.append(now - intended)
            t.service.append(now - sent)
        t.last_done_ns = now
        if self.refill is not None and self.transport is not None:
            for _ in range(replies):
                pending.append((now, now))
            self.transport.write(self.refill * replies)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"


async def connect(
    address: tuple[str, int], connections: int, timings: Timings, payload: bytes
) -> tuple[list[LeanEcho], bytes]:
    """``connections`` lean connections and the one frame every request sends."""
    frame = len(payload).to_bytes(HEADER_BYTES, "big") + payload
    loop = asyncio.get_running_loop()
    conns = []
    for _ in range(connections):
        _, proto = await loop.create_connection(
            lambda: LeanEcho(timings, len(frame)), address[0], address[1]
        )
        conns.append(proto)
    return conns, frame


def close(conns: Sequence[Any]) -> None:
    """Close every connection of a step (anything with an asyncio ``transport``)."""
    for conn in conns:
        if conn.transport is not None:
            conn.transport.close()


def _record(hist: Any, values: list[int]) -> None:
    """Every value, or past MAX_RECORDED an evenly spaced sample each counted ``stride`` times
    (a million Python record calls would take seconds, and the percentiles do not move)."""
    stride = max(1, -(-len(values) // MAX_RECORDED))
    for value in values[::stride]:
        hist.record_value(min(max(int(value), 1), HIGHEST_NS), stride)


def to_result(timings: Timings, start_ns: int, sent: int, scheduled: int) -> LoadResult:
    """The step's LoadResult from its raw samples (``on_done`` first: the CPU meter stops
    before this bookkeeping)."""
    if timings.on_done is not None:  # the CPU meter stops before the bookkeeping below
        timings.on_done()
    result = LoadResult(first_ns=start_ns, scheduled=scheduled, sent=sent)
    _record(result.latency, timings.latency)
    _record(result.service, timings.service)
    _record(result.lag, timings.lag)
    result.completed = len(timings.latency)
    result.last_done_ns = timings.last_done_ns
    return result


async def dispatch_schedule(
    schedule: OpenLoopSchedule,
    *,
    deadline_ns: int,
    max_inflight: int,
    answered: Callable[[], int],
    dispatch: Callable[[int, int, int], None],
    lost: Callable[[], bool],
) -> tuple[int, bool]:
    """The lean generators' open-loop dispatcher: each loop turn, ``dispatch(i, due, now)``
    sends requests ``i..due-1`` (every one whose intended time has passed, in one write per
    connection); between turns it sleeps on a timer while the next request is more than
    SPIN_NS away and busy-polls the loop otherwise (bench/load.py). Stops at the schedule's
    end, at ``deadline_ns``, when a connection is ``lost()``, or when more than
    ``max_inflight`` requests would be outstanding (``answered()``: requests answered so far).
    Returns (requests sent, overloaded)."""
    clock = time.perf_counter_ns
    i = 0
    while i < schedule.count:
        now = clock()
        if now >= deadline_ns:
            break
        due = schedule.due(now)
        if due > i:
            if i - answered() + (due - i) > max_inflight:
                return i, True
            dispatch(i, due, now)
            i = due
            if lost():
                break
        if i >= schedule.count:
            break
        wait = schedule.intended_ns(i) - clock()
        await asyncio.sleep((wait - SPIN_NS) / 1e9 if wait > SPIN_NS else 0)
    return i, False


class Limits(TypedDict):
    """Where an open-loop step stops (bench/load.py): more than ``max_inflight`` requests
    outstanding (overloaded), ``deadline_ns`` for the dispatch, ``drain_s`` for the last
    replies."""

    max_inflight: int
    deadline_ns: int
    drain_s: float


class Outstanding(Protocol):
    """What :func:`open_loop` needs of one lean connection (``LeanEcho`` here, bench/refs/
    lean_load.py's ``Sender``): the shared timings, the FIFO of requests outstanding, each
    entry starting with its intended time, and why the connection was lost, if it was."""

    timings: Timings
    lost: str | None

    @property
    def pending(self) -> Sequence[tuple[int, ...]]: ...


async def open_loop(
    conns: Sequence[Outstanding],
    schedule: OpenLoopSchedule,
    dispatch: Callable[[int, int, int], None],
    *,
    answered: Callable[[], int],
    **limits: Unpack[Limits],
) -> LoadResult:
    """The lean generators' open loop around their own ``dispatch`` (``dispatch_schedule``):
    the schedule's requests go out, then the replies are awaited for up to ``drain_s`` (not
    past a lost connection), and the requests still outstanding count as timeouts, recorded
    at the latency they had reached. The caller adds its own errors."""
    timings = conns[0].timings
    clock = time.perf_counter_ns

    def lost() -> bool:
        return any(conn.lost for conn in conns)

    i, overloaded = await dispatch_schedule(
        schedule,
        deadline_ns=limits["deadline_ns"],
        max_inflight=limits["max_inflight"],
        answered=answered,
        dispatch=dispatch,
        lost=lost,
    )
    drain_until = clock() + int(limits["drain_s"] * 1e9)
    while any(c.pending for c in conns) and clock() < drain_until:
        if lost():
            break
        await asyncio.sleep(DRAIN_POLL_S)
    result = to_result(timings, schedule.start_ns, i, schedule.count)
    result.overloaded = overloaded
    now = clock()
    for conn in conns:  # still outstanding: at least this slow
        for request in conn.pending:
            record_ns(result.latency, now - request[0])
        result.timeouts += len(conn.pending)
    return result


async def lean_open_loop(
    conns: list[LeanEcho], frame: bytes, schedule: OpenLoopSchedule, **limits: Unpack[Limits]
) -> LoadResult:
    """Open loop at ``schedule``: due requests leave in one write per connection per turn."""
    timings = conns[0].timings
    n = len(conns)
    lag = timings.lag

    def dispatch(i: int, due: int, now: int) -> None:
        batch = [0] * n
        for j in range(i, due):
            intended = schedule.intended_ns(j)
            conns[j % n].pending.append((intended, now))
            lag.append(now - intended)
            batch[j % n] += 1
        for conn, k in zip(conns, batch, strict=True):
            if k and conn.transport is not None:
                conn.transport.write(frame * k)

    result = await open_loop(
        conns,
        schedule,
        dispatch,
        answered=lambda: len(timings.latency),
        **limits,
    )
    lost = next((conn.lost for conn in conns if conn.lost), None)
    if lost:
        result.errors = result.timeouts
        result.first_error = lost
    return result


async def lean_closed_loop(
    conns: list[LeanEcho], frame: bytes, depth: int, duration_s: float
) -> LoadResult:
    """Each connection keeps ``depth`` requests outstanding for ``duration_s``."""
    timings = conns[0].timings
    start = time.perf_counter_ns()
    for conn in conns:
        conn.refill = frame
        conn.pending.extend([(start, start)] * depth)
        assert conn.transport is not None
        conn.transport.write(frame * depth)
    await asyncio.sleep(duration_s)
    # A loop busy with replies wakes from the sleep late: the window is what the clock says.
    stopped = time.perf_counter_ns()
    for conn in conns:
        conn.refill = None
    done = len(timings.latency)
    drain_until = time.perf_counter_ns() + 2_000_000_000
    while any(c.pending for c in conns) and time.perf_counter_ns() < drain_until:  # noqa: ASYNC110
        await asyncio.sleep(DRAIN_POLL_S)
    # Only what completed inside the window counts (the drain lets the sockets go quiet).
    timings.latency, timings.service = timings.latency[:done], timings.service[:done]
    result = to_result(timings, start, done, done)
    result.last_done_ns = stopped
    return result


async def drive_step(
    job: dict[str, Any],
    connections: int,
    closed_loop: Callable[[int, float], Awaitable[LoadResult]],
    open_loop: Callable[..., Awaitable[LoadResult]],
    depth_of: Callable[[dict[str, Any]], int] = lambda job: job["depth"],
) -> tuple[LoadResult, int | None, float | None]:
    """Drive one step of a lean generator over its open connections: (result, requests in
    flight, offered rate). Closed loop: ``closed_loop(depth, duration_s)`` with ``depth_of(job)``
    outstanding per connection. Open loop: ``open_loop(schedule, max_inflight=, deadline_ns=,
    drain_s=)`` at the job's rate; the lean generators' requests are cheap, so a backlog of a
    quarter second of the schedule (``BACKLOG_S``), at least the job's cap, is allowed before
    the step calls the server hopelessly behind."""
    if job["mode"] == "closed":
        depth = depth_of(job)
        result = await closed_loop(depth, job["duration_s"])
        return result, depth * connections, None
    rate = float(job["rate"])
    count = max(1, round(rate * job["duration_s"]))
    start = time.perf_counter_ns() + 2_000_000
    result = await open_loop(
        OpenLoopSchedule(rate, start, count),
        max_inflight=max(job["max_inflight"], round(rate * BACKLOG_S)),
        deadline_ns=start + int(job["duration_s"] * 1.5e9),
        drain_s=job["drain_s"],
    )
    return result, job["max_inflight"], rate


async def run_lean(
    job: dict[str, Any],
) -> tuple[LoadResult, int | None, float | None, dict[str, float | None]]:
    """One load step of the lean generator: (result, requests in flight, offered rate, CPU)."""
    spec = job["target"]
    address = (spec["address"][0], int(spec["address"][1]))
    timings = Timings()
    conns, frame = await connect(address, job["connections"], timings, job["body"].encode())
    try:
        for conn in conns:  # warm the connections: one round trip each
            conn.pending.append((0, 0))
            assert conn.transport is not None
            conn.transport.write(frame)
        warm_until = time.perf_counter_ns() + 5_000_000_000
        while len(timings.latency) < len(conns):
            if time.perf_counter_ns() > warm_until or any(conn.lost for conn in conns):
                raise ConnectionError(f"no echo from {address[0]}:{address[1]} within 5 s")
            await asyncio.sleep(DRAIN_POLL_S)
        timings.latency.clear()
        timings.service.clear()
        from bench.endpoints import CpuMeter

        meter = CpuMeter(int(spec["server_pid"]))
        cpu: dict[str, float | None] = {}
        timings.on_done = lambda: cpu.update(meter.elapsed())
        result, inflight, offered = await drive_step(
            job,
            len(conns),
            functools.partial(lean_closed_loop, conns, frame),
            functools.partial(lean_open_loop, conns, frame),
        )
    finally:
        close(conns)
    return result, inflight, offered, cpu


__all__ = [
    "BACKLOG_S",
    "LEAN_REFS",
    "LeanEcho",
    "Limits",
    "Outstanding",
    "Timings",
    "close",
    "dispatch_schedule",
    "drive_step",
    "lean_closed_loop",
    "lean_open_loop",
    "open_loop",
    "run_lean",
    "to_result",
]
