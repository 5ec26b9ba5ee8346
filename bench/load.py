"""Throughput and latency under load: open loop at fixed offered rates, and a closed-loop
saturation run.

Open loop (no coordinated omission). Request i has an *intended* send time
``start + i / rate``, fixed before the run. The dispatcher issues every request whose intended
time has passed without waiting for earlier replies, and each latency is measured from the
intended time, not from when the request actually left. A stall anywhere (server, network,
this generator) therefore shows up in the latencies of every request it delayed, as it would
for a real client population that does not slow down when the server does.

Timer precision. uvloop's timers have millisecond resolution, far coarser than the ~10-100 µs
gaps between requests, so the dispatcher sleeps on a timer only while the next request is more
than ``SPIN_NS`` away and busy-polls the event loop (``sleep(0)``: one loop turn, replies are
processed) for the rest. The generator therefore uses its whole vCPU at rates above ~1 k/s:
its CPU time in open-loop rows is not a cost of the transport (the closed-loop row is). How
well it kept to the schedule is reported as the dispatch lag (actual - intended send time).

Why it busy-polls rather than sleeping precisely (tried in stop 34, not merged): a timerfd
armed at the intended time, on the 2-vCPU AMD EPYC VM, woke 40-110 µs late at the p50 and
0.1-1.5 ms at the p99 (an idle vCPU wakes late) and cost 30-80 µs of CPU a wait. Armed
200 µs early with the rest polled, paired population rounds at 1,000 sends/s on custom
read a client vCPU 61 % busy instead of 100 %, but a dispatch lag p99 of 0.75 ms against
0.45, over 1 ms in 2 rounds of 10 (never with the busy-poll), and push p50 1.15-1.25x
higher, because every reply then wakes an idle client. The open loop is there to time the
server against an offered rate, so the generator stays hot and the clients' cost is read
from the closed-loop rows.

A step ends after ``count`` requests or at its deadline, or as soon as more than
``max_inflight`` requests are outstanding (the server has fallen hopelessly behind; the row
says ``overloaded``). Replies still missing ``drain_s`` after the last dispatch are counted as
timeouts and recorded at the latency they had reached, so they are not silently dropped.

Closed loop. ``connections x depth`` workers each keep one request outstanding, back to back,
for ``duration_s``: the highest throughput the transport sustains with that much concurrency,
and the CPU time per operation of both sides (neither side spins here).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from hdrh.histogram import HdrHistogram  # type: ignore[import-untyped]

from bench.endpoints import PASSWORD, CpuMeter, chat_target, cpu_fields
from bench.refs.clients import echo_client
from bench.stats import new_histogram, record_ns, summarize

log = logging.getLogger(__name__)

#: Below this gap to the next intended send the dispatcher busy-polls instead of sleeping on a
#: millisecond timer (see the module docstring).
SPIN_NS = 1_200_000
#: How often the drain phase looks whether the last replies are in.
DRAIN_POLL_S = 0.001

Clock = Callable[[], int]
Sleep = Callable[[float], Awaitable[None]]
Issue = Callable[[int], Awaitable[Any]]


@dataclass(frozen=True)
class OpenLoopSchedule:
    """Request ``i`` is intended at ``start_ns + i * 1e9 / rate_per_s``; ``count`` requests."""

    rate_per_s: float
    start_ns: int
    count: int

    @property
    def period_ns(self) -> float:
        return 1e9 / self.rate_per_s

    def intended_ns(self, i: int) -> int:
        return self.start_ns + round(i * self.period_ns)

    def due(self, now_ns: int) -> int:
        """How many requests should have been sent by ``now_ns`` (intended time <= now)."""
        if now_ns < self.start_ns:
            return 0
        return min(self.count, math.floor((now_ns - self.start_ns) / self.period_ns) + 1)


@dataclass
class LoadResult:
    latency: HdrHistogram = field(default_factory=new_histogram)  # reply - intended
    lag: HdrHistogram = field(default_factory=new_histogram)  # dispatch - intended (queueing)
    service: HdrHistogram = field(default_factory=new_histogram)  # reply - dispatch
    scheduled: int = 0  # requests the schedule asked for
    sent: int = 0
    completed: int = 0
    errors: int = 0
    timeouts: int = 0
    overloaded: bool = False
    first_ns: int = 0
    last_done_ns: int = 0
    first_error: str | None = None

    @property
    def elapsed_s(self) -> float:
        return max(self.last_done_ns - self.first_ns, 1) / 1e9

    @property
    def achieved_per_s(self) -> float:
        return self.completed / self.elapsed_s if self.completed else 0.0


async def run_open_loop(
    schedule: OpenLoopSchedule,
    issue: Issue,
    *,
    max_inflight: int,
    deadline_ns: int,
    drain_s: float,
    clock: Clock = time.perf_counter_ns,
    sleep: Sleep = asyncio.sleep,
) -> LoadResult:
    """Issue ``schedule.count`` requests at their intended times; see the module docstring."""
    result = LoadResult(first_ns=schedule.start_ns, scheduled=schedule.count)
    inflight: dict[int, int] = {}  # request index -> intended time, while outstanding
    tasks: set[asyncio.Task[None]] = set()

    async def one(i: int, intended: int, dispatched: int) -> None:
        try:
            await issue(i)
        except Exception as exc:
            result.errors += 1
            result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
        else:
            done = clock()
            record_ns(result.latency, done - intended)
            record_ns(result.service, done - dispatched)
            result.completed += 1
            result.last_done_ns = max(result.last_done_ns, done)
        finally:
            del inflight[i]

    i = 0
    while i < schedule.count:
        now = clock()
        if now >= deadline_ns:
            break
        due = schedule.due(now)
        while i < due:
            if len(inflight) >= max_inflight:
                result.overloaded = True
                break
            intended = schedule.intended_ns(i)
            record_ns(result.lag, now - intended)
            inflight[i] = intended
            task = asyncio.ensure_future(one(i, intended, now))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            i += 1
        if result.overloaded or i >= schedule.count:
            break
        wait = schedule.intended_ns(i) - clock()
        await sleep((wait - SPIN_NS) / 1e9 if wait > SPIN_NS else 0)
    result.sent = i

    drain_until = clock() + int(drain_s * 1e9)
    while inflight and clock() < drain_until:
        await sleep(DRAIN_POLL_S)
    now = clock()
    for intended in list(inflight.values()):  # still outstanding: at least this slow
        record_ns(result.latency, now - intended)
    result.timeouts = len(inflight)
    late = [task for task in tasks if not task.done()]
    for task in late:
        task.cancel()
    await asyncio.gather(*late, return_exceptions=True)
    return result


async def run_closed_loop(
    issue: Issue, workers: int, duration_s: float, *, clock: Clock = time.perf_counter_ns
) -> LoadResult:
    """``workers`` back-to-back requesters for ``duration_s``; latency from each actual send."""
    start = clock()
    stop_at = start + int(duration_s * 1e9)
    result = LoadResult(first_ns=start)
    counter = iter(range(1 << 62))

    async def worker() -> None:
        while clock() < stop_at:
            i = next(counter)
            t0 = clock()
            try:
                await issue(i)
            except Exception as exc:
                result.errors += 1
                result.first_error = result.first_error or f"{type(exc).__name__}: {exc}"
                if result.errors > 100:
                    return
                continue
            done = clock()
            record_ns(result.latency, done - t0)
            result.completed += 1
            result.last_done_ns = max(result.last_done_ns, done)

    await asyncio.gather(*(worker() for _ in range(workers)))
    result.sent = result.completed + result.errors
    return result


# -- the worker job ------------------------------------------------------------------------


async def _setup_chat(job: dict[str, Any]) -> tuple[Issue, Callable[[], Awaitable[None]], int]:
    """Senders on ``connections`` connections, each its own user, to one offline recipient.

    Cleanup deletes the recipient, which removes every message of the step still pending to
    it, so step after step runs against a store of the same size.
    """
    target = chat_target(job["target"])
    prefix, body = job["prefix"], job["body"]
    recipient = [f"{prefix}r"]
    try:
        await target.discard(await target.user(recipient[0]))
        senders = [await target.user(f"{prefix}s{c}") for c in range(job["connections"])]
    except BaseException:
        await target.aclose()
        raise
    n = len(senders)

    def issue(i: int) -> Awaitable[Any]:
        return senders[i % n].send(recipient, body)

    async def cleanup() -> None:
        try:
            owner = await target.user(recipient[0], signup=False)
            await owner.delete_account(recipient[0], PASSWORD)
        finally:
            await target.aclose()

    return issue, cleanup, target.server_pid


async def _setup_echo(job: dict[str, Any]) -> tuple[Issue, Callable[[], Awaitable[None]], int]:
    spec = job["target"]
    address = tuple(spec["address"])
    clients = [
        echo_client(spec["ref"], address, blocking_floor=False) for _ in range(job["connections"])
    ]
    payload = job["body"].encode()
    n = len(clients)

    async def cleanup() -> None:
        for client in clients:
            await client.close()

    try:
        for client in clients:
            await client.connect()
    except BaseException:
        await cleanup()
        raise

    def issue(i: int) -> Awaitable[Any]:
        return clients[i % n].echo(payload)

    return issue, cleanup, int(spec["server_pid"])


def lean(job: dict[str, Any]) -> bool:
    """Whether the lean generator (bench/loadgen.py) drives this job: a length-prefixed echo."""
    from bench.loadgen import LEAN_REFS

    target = job["target"]
    return target["kind"] == "echo" and target.get("ref") in LEAN_REFS and job.get("lean", True)


def timing_fields(result: LoadResult) -> dict[str, Any]:
    """The figures every load row carries, whichever generator measured it.

    ``sent_fraction`` is the share of the schedule the generator sent; the queueing delay
    (intended -> sent, the generator's lateness) and the service time (sent -> reply) are
    kept apart, as Nighthawk reports them; the row's percentiles count from the intended time.
    """
    summary = summarize(result.latency)
    queue = summarize(result.lag, with_hist=False)
    service = summarize(result.service, with_hist=False)
    scheduled = result.scheduled or result.sent
    return {
        "scheduled": scheduled,
        "sent_fraction": round(result.sent / scheduled, 4) if scheduled else None,
        **{k: summary[k] for k in summary if k != "spectrum"},
        "dispatch_lag_p50_us": queue["p50_us"],
        "dispatch_lag_p99_us": queue["p99_us"],
        "queue_p50_us": queue["p50_us"],
        "queue_p99_us": queue["p99_us"],
        "service_p50_us": service["p50_us"],
        "service_p99_us": service["p99_us"],
    }


async def _warm_up(issue: Issue, calls: int, connections: int) -> None:
    """``calls`` untimed calls, one in flight per connection (``issue(i)`` goes out on
    connection ``i % connections``): every connection and the server's paths are warm, in a
    quarter of the time one call at a time would take on four connections."""
    width = max(1, connections)
    for start in range(0, calls, width):
        await asyncio.gather(*(issue(i) for i in range(start, min(start + width, calls))))


#: Engine names of load rows: the product's client, the echo generator (bench/loadgen.py),
#: the frame generator of the custom-framed transports (bench/refs/lean_load.py), the
#: WebSocket frame generator of the websocket transport and ws_echo (bench/refs/lean_ws.py).
CLIENT, LEAN, FRAMES, WS = "client", "lean", "lean-frames", "lean-ws"
#: The product client's closed loop beside the frame generator's runs this share of the step.
CLIENT_SHARE = 0.5


def lean_chat_engine(job: dict[str, Any]) -> str | None:
    """Which lean chat generator drives this job, by its engine name, or None (the echo
    generator or the product's client does). Only a job that asks for them (``frames``; the
    bench's load steps do) gets one: ``WS`` (bench/refs/lean_ws.py) for the websocket
    transport, its floor ``ws_echo``, and ``null_echo`` with ``engine`` "lean-ws" (that
    generator's ceiling); ``FRAMES`` (bench/refs/lean_load.py) for a chat transport in the
    custom protocol's varint frames and ``null_echo`` otherwise (its ceiling, unless the job
    names another ``engine``). An in-process (loopback) target has no frames: None."""
    if not job.get("frames"):
        return None
    target = job["target"]
    if target["kind"] == "echo":
        ref, engine = target.get("ref"), job.get("engine", FRAMES)
        if ref == "ws_echo" or (ref == "null_echo" and engine == WS):
            return WS
        return FRAMES if ref == "null_echo" and engine == FRAMES else None
    if target.get("address") is None:
        return None
    from bench.refs.lean_load import framed_codec
    from bench.refs.lean_ws import speaks_ws

    if speaks_ws(target["transport"]):
        return WS
    return FRAMES if framed_codec(target["transport"]) is not None else None


async def run_load(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One load step: ``mode`` "open" at ``rate`` or "closed" with ``depth`` per connection.

    The lean generators drive what they speak: the echo one (bench/loadgen.py) the
    length-prefixed echo references, the frame one (bench/refs/lean_load.py, when the job
    asks) the custom-framed chat transports, the WebSocket one (bench/refs/lean_ws.py, when
    the job asks) the websocket transport and ws_echo. A closed-loop step of a chat
    transport also measures the product's client, first, so the step's rows are [client,
    lean-*]: the runner steps the open loop from the last closed-loop row, the one that
    saturates the server. A job with ``lean_only`` (a block of a paired scene:
    bench/durable_scene.py) runs the lean generator alone.
    """
    engine = lean_chat_engine(job)
    if engine is not None:
        rows = []
        client_too = job["target"]["kind"] == "chat" and not job.get("lean_only")
        if job["mode"] == "closed" and client_too:
            # what the product client reaches and costs: half the step's time is plenty
            # for a per-op figure (thousands of sends), and keeps the full bench in budget
            rows = await _run_client({**job, "duration_s": job["duration_s"] * CLIENT_SHARE})
        # fresh accounts: the client's step left its senders signed up
        framed = {**job, "prefix": f"{job['prefix']}f"}
        if engine == WS:
            from bench.refs.lean_ws import run_ws as run_lean_chat
        else:
            from bench.refs.lean_load import run_frames as run_lean_chat
        result, inflight, offered, cpu, cleanup_error = await run_lean_chat(framed)
        return [*rows, _row(job, result, inflight, offered, cpu, cleanup_error, engine)]
    if lean(job):
        from bench.loadgen import run_lean

        lean_result, lean_inflight, lean_offered, lean_cpu = await run_lean(job)
        return [_row(job, lean_result, lean_inflight, lean_offered, lean_cpu, None, LEAN)]
    return await _run_client(job)


async def _run_client(job: dict[str, Any]) -> list[dict[str, Any]]:
    """One load step driven by the product's client (the echo references' own clients)."""
    setup = _setup_echo if job["target"]["kind"] == "echo" else _setup_chat
    issue, cleanup, server_pid = await setup(job)
    try:
        await _warm_up(issue, job.get("warmup", 0), job["connections"])
        meter = CpuMeter(server_pid)
        if job["mode"] == "closed":
            workers = job["connections"] * job["depth"]
            result = await run_closed_loop(issue, workers, job["duration_s"])
            inflight: int | None = workers
            offered = None
        else:
            rate = float(job["rate"])
            count = max(1, round(rate * job["duration_s"]))
            start = time.perf_counter_ns() + 2_000_000
            schedule = OpenLoopSchedule(rate, start, count)
            result = await run_open_loop(
                schedule,
                issue,
                max_inflight=job["max_inflight"],
                deadline_ns=start + int(job["duration_s"] * 1.5e9),
                drain_s=job["drain_s"],
            )
            inflight, offered = job["max_inflight"], rate
        cpu = meter.elapsed()
    except BaseException:
        with contextlib.suppress(Exception):
            await cleanup()
        raise
    # A failed clean-up (deleting the step's recipient) does not undo what was measured; the
    # row says so, and the next step uses fresh accounts anyway.
    cleanup_error = None
    try:
        await cleanup()
    except Exception as exc:
        cleanup_error = f"{type(exc).__name__}: {exc}"
        log.warning("load step clean-up failed: %s", cleanup_error)
    return [_row(job, result, inflight, offered, cpu, cleanup_error, CLIENT)]


def _row(
    job: dict[str, Any],
    result: LoadResult,
    inflight: int | None,
    offered: float | None,
    cpu: dict[str, float | None],
    cleanup_error: str | None,
    engine: str,
) -> dict[str, Any]:
    """One results.json load row (bench/SCHEMA.md)."""
    return {
        "mode": job["mode"],
        "offered_per_s": offered,
        "achieved_per_s": round(result.achieved_per_s, 1),
        "duration_s": round(result.elapsed_s, 3),
        "sent": result.sent,
        "completed": result.completed,
        "errors": result.errors,
        "timeouts": result.timeouts,
        "overloaded": result.overloaded,
        "first_error": result.first_error,
        "cleanup_error": cleanup_error,
        "connections": job["connections"],
        "max_inflight": inflight,
        # closed loop: requests outstanding per connection
        "depth": inflight // job["connections"] if job["mode"] == "closed" and inflight else None,
        "engine": engine,
        **timing_fields(result),
        **cpu_fields(cpu, result.completed),
    }


__all__ = [
    "CLIENT",
    "FRAMES",
    "LEAN",
    "WS",
    "LoadResult",
    "OpenLoopSchedule",
    "lean_chat_engine",
    "run_closed_loop",
    "run_load",
    "run_open_loop",
]
