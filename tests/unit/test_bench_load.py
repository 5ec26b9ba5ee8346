"""The open-loop scheduler: intended send times, and latency counted from them.

These run the real dispatcher against simulated time (a tiny discrete-event clock), so the
assertions are exact and nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import pytest

from bench.load import OpenLoopSchedule, run_closed_loop, run_open_loop
from bench.stats import summarize
from tests.unit.lean_echo import (
    assert_every_request_answered,
    echo_target,
    null_echo,
    open_loop_of_200,
)

MS = 1_000_000


class SimTime:
    """Simulated nanosecond clock for the dispatcher's injected ``clock`` and ``sleep``: a
    request's service ends at a fixed simulated time, and a zero sleep is a 10 µs loop turn."""

    def __init__(self) -> None:
        self.now = 0
        self._pending: list[tuple[int, asyncio.Future[None]]] = []

    def clock(self) -> int:
        return self.now

    def advance(self, ns: int) -> None:
        """Jump ahead without letting anything run (a stalled client)."""
        self.now += ns

    async def sleep(self, seconds: float) -> None:
        """Move time forward to the end of the sleep, completing each request in time order
        at the exact moment its service ends (each gets a loop turn to record it)."""
        until = self.now + max(int(seconds * 1e9), 10_000)
        await asyncio.sleep(0)  # requests just dispatched start now, not after the sleep
        while self._pending:
            done_at, future = min(self._pending, key=lambda p: p[0])
            if done_at > until:
                break
            self._pending.remove((done_at, future))
            self.now = max(self.now, done_at)
            future.set_result(None)
            await asyncio.sleep(0)
        self.now = max(self.now, until)
        await asyncio.sleep(0)

    def serve(self, service_ns: int) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._pending.append((self.now + service_ns, future))
        return future


def test_schedule_spaces_requests_by_the_rate() -> None:
    schedule = OpenLoopSchedule(rate_per_s=1000, start_ns=5 * MS, count=10)
    assert [schedule.intended_ns(i) for i in range(3)] == [5 * MS, 6 * MS, 7 * MS]
    assert schedule.due(5 * MS - 1) == 0
    assert schedule.due(5 * MS) == 1
    assert schedule.due(7 * MS + 1) == 3
    assert schedule.due(10**12) == 10  # never more than the step's count


async def run(sim: SimTime, schedule: OpenLoopSchedule, issue, **kw):  # type: ignore[no-untyped-def]
    kw.setdefault("max_inflight", 1000)
    kw.setdefault("deadline_ns", 10**12)
    kw.setdefault("drain_s", 1.0)
    return await run_open_loop(schedule, issue, clock=sim.clock, sleep=sim.sleep, **kw)


async def test_on_schedule_latency_is_the_service_time() -> None:
    sim = SimTime()

    async def issue(i: int) -> None:
        await sim.serve(100_000)  # 100 µs

    result = await run(sim, OpenLoopSchedule(1000, 1 * MS, 20), issue)
    summary = summarize(result.latency)
    assert result.sent == result.completed == 20
    assert summary["p50_us"] == pytest.approx(100, abs=5)
    assert summary["max_us"] == pytest.approx(100, abs=5)
    assert summarize(result.lag)["max_us"] < 5  # the dispatcher kept to the schedule


async def test_a_stall_counts_against_every_request_it_delayed() -> None:
    # 1000/s with a 100 µs service time, but the client stalls for 5 ms while issuing
    # request 3 (a GC pause, say). Requests 4..8 were due during the stall and leave late;
    # measured from their intended times they are milliseconds slow, not 100 µs.
    sim = SimTime()

    async def issue(i: int) -> None:
        if i == 3:
            sim.advance(5 * MS)
        await sim.serve(100_000)

    result = await run(sim, OpenLoopSchedule(1000, 1 * MS, 20), issue)
    assert result.completed == 20
    summary = summarize(result.latency)
    # Requests 3..8 (6 of 20) are late by 1-5 ms; the other 14 take 100 µs.
    assert summary["p50_us"] == pytest.approx(100, abs=5)
    assert summary["p90_us"] > 1000
    assert summary["max_us"] == pytest.approx(5100, rel=0.01)
    assert summarize(result.lag)["max_us"] > 4000  # and the lag says the generator was late


async def test_a_slow_server_is_stopped_at_the_inflight_cap() -> None:
    sim = SimTime()

    async def issue(i: int) -> None:
        await sim.serve(10**12)  # never answers within the test

    result = await run(
        sim, OpenLoopSchedule(1000, 1 * MS, 100), issue, max_inflight=5, drain_s=0.01
    )
    assert result.overloaded
    assert result.sent == 5
    assert result.completed == 0
    assert result.timeouts == 5
    # The unanswered requests are in the histogram at the latency they had reached.
    assert summarize(result.latency)["n"] == 5
    assert summarize(result.latency)["min_us"] >= 10_000


async def test_errors_are_counted_not_timed() -> None:
    sim = SimTime()

    async def issue(i: int) -> None:
        await sim.serve(50_000)
        if i % 2:
            raise ConnectionError("boom")

    result = await run(sim, OpenLoopSchedule(2000, 0, 10), issue)
    assert (result.completed, result.errors) == (5, 5)
    assert result.first_error == "ConnectionError: boom"
    assert summarize(result.latency)["n"] == 5


async def test_achieved_rate_follows_the_offered_rate() -> None:
    sim = SimTime()

    async def issue(i: int) -> None:
        await sim.serve(10_000)

    result = await run(sim, OpenLoopSchedule(5000, 0, 500), issue)
    assert result.achieved_per_s == pytest.approx(5000, rel=0.01)


async def test_closed_loop_keeps_every_worker_busy_until_the_deadline() -> None:
    calls = 0

    async def issue(i: int) -> None:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0)

    result = await run_closed_loop(issue, workers=4, duration_s=0.05)
    assert result.completed == calls > 4
    assert result.errors == 0
    assert summarize(result.latency)["n"] == calls


async def test_closed_loop_gives_up_on_a_broken_target() -> None:
    async def issue(i: int) -> None:
        await asyncio.sleep(0)
        raise ConnectionResetError("gone")

    result = await run_closed_loop(issue, workers=2, duration_s=30)
    assert result.completed == 0
    assert 100 < result.errors <= 102  # each worker stops once the error count passes 100


async def test_a_failed_clean_up_keeps_the_steps_row_and_says_why(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Deleting the step's recipient afterwards can fail (a transport's bug, say): what was
    measured still stands, and the row names the failure."""
    import os

    from bench import load

    async def setup(job: dict[str, object]):  # type: ignore[no-untyped-def]
        async def issue(i: int) -> None:
            await asyncio.sleep(0)

        async def cleanup() -> None:
            raise RuntimeError("session ended: the account was deleted")

        return issue, cleanup, os.getpid()

    monkeypatch.setattr(load, "_setup_echo", setup)
    job = {
        "target": {"kind": "echo"},
        "mode": "closed",
        "connections": 1,
        "depth": 2,
        "duration_s": 0.05,
        "warmup": 2,
    }
    (row,) = await load.run_load(job)
    assert row["completed"] > 0 and row["errors"] == 0
    assert row["cleanup_error"] == "RuntimeError: session ended: the account was deleted"


# -- queueing vs service time, and the lean generator ------------------------------------------


async def test_a_stall_is_queueing_not_service_time() -> None:
    """The Nighthawk split: a client stall makes requests leave late (queueing), while the
    server still answers each in 100 µs (service)."""
    from bench.load import timing_fields

    sim = SimTime()

    async def issue(i: int) -> None:
        if i == 3:
            sim.advance(5 * MS)
        await sim.serve(100_000)

    result = await run(sim, OpenLoopSchedule(1000, 1 * MS, 20), issue)
    fields = timing_fields(result)
    assert fields["scheduled"] == 20 and fields["sent_fraction"] == 1.0
    # Requests 4..8 left up to 5 ms late but were served in 100 µs; only request 3, whose own
    # send stalled, has the stall in its service time.
    assert fields["service_p50_us"] == pytest.approx(100, abs=5)
    assert fields["queue_p99_us"] > 4000
    assert fields["p99_us"] > 4000  # the row's latency still counts from the intended time


async def test_an_overloaded_step_reports_the_share_of_its_schedule_it_sent() -> None:
    from bench.load import timing_fields

    sim = SimTime()

    async def issue(i: int) -> None:
        await sim.serve(10**12)

    result = await run(
        sim, OpenLoopSchedule(1000, 1 * MS, 100), issue, max_inflight=5, drain_s=0.01
    )
    assert timing_fields(result)["sent_fraction"] == 0.05


async def test_the_lean_generator_matches_every_reply_to_its_request() -> None:
    """Open loop against the null responder: every request of the schedule is answered and
    timed once, from its intended time, with queueing and service apart."""
    from bench.loadgen import Timings, close, connect, lean_open_loop

    server, address = await null_echo()
    try:
        conns, frame = await connect(address, 3, Timings(), b"x" * 32)
        result = await open_loop_of_200(functools.partial(lean_open_loop, conns, frame))
        close(conns)
    finally:
        server.close()
    assert_every_request_answered(result)


async def test_the_lean_generator_counts_replies_split_across_reads() -> None:
    """Replies arrive in arbitrary pieces; each completes when its last byte does."""
    from bench.loadgen import LeanEcho, Timings

    timings = Timings()
    conn = LeanEcho(timings, reply_size=36)
    conn.pending.extend([(0, 0), (0, 0), (0, 0)])
    reply = b"\x00\x00\x00\x20" + b"y" * 32
    stream = reply * 3
    for piece in (stream[:5], stream[5:40], stream[40:41], stream[41:]):
        conn.data_received(piece)
    assert len(timings.latency) == 3 and not conn.pending and conn.buffered == 0


async def test_the_lean_closed_loop_keeps_its_window_full() -> None:
    from bench.loadgen import Timings, close, connect, lean_closed_loop

    server, address = await null_echo()
    try:
        conns, frame = await connect(address, 2, Timings(), b"z" * 32)
        result = await lean_closed_loop(conns, frame, depth=4, duration_s=0.2)
        close(conns)
    finally:
        server.close()
    assert result.completed > 8 and result.errors == 0
    assert result.achieved_per_s > 0


async def test_run_load_picks_the_lean_generator_for_a_length_prefixed_echo() -> None:
    from bench import load

    server, address = await null_echo()
    try:
        job = {
            "target": echo_target(address),
            "mode": "open",
            "rate": 200,
            "duration_s": 0.5,
            "max_inflight": 100,
            "drain_s": 2.0,
            "connections": 2,
            "body": "b" * 32,
        }
        (row,) = await load.run_load(job)
    finally:
        server.close()
    assert row["engine"] == "lean"
    assert row["scheduled"] == 100
    # A loaded machine may stall the generator past the step's deadline (1.5x its length),
    # which ends the schedule early: that is the generator's figure to report, not a failure.
    # Whatever it sent is answered.
    sent = round(row["sent_fraction"] * row["scheduled"])
    assert sent > 0 and row["completed"] == sent and row["timeouts"] == 0


# -- the generator scene: saturation by a bound ----------------------------------------------


def _step(offered: float, p99: float, **kw: object) -> dict[str, object]:
    row: dict[str, object] = {
        "transport": "custom",
        "store": "memory",
        "mode": "open",
        "offered_per_s": offered,
        "achieved_per_s": offered,
        "sent": int(offered),
        "scheduled": int(offered),
        "sent_fraction": 1.0,
        "timeouts": 0,
        "overloaded": False,
        "p99_us": p99,
        "queue_p99_us": 50.0,
        "service_p99_us": p99 - 50,
        "server_cpu_util": 0.5,
        "client_cpu_util": 1.0,
        "other_vcpus": 0.01,
        "engine": "client",
    }
    row.update(kw)
    return row


def test_saturation_is_the_highest_rate_kept_under_each_bound(tmp_path: Path) -> None:
    from bench import loadgen_scene

    results = {
        "load": [
            _step(1000, 800),
            _step(5000, 9_000),
            _step(8000, 60_000),
            _step(9000, 20_000, sent_fraction=0.9),  # fast, but fell behind its schedule
            _step(12000, 300_000, overloaded=True),
        ]
    }
    sat = loadgen_scene.saturation_by_bound
    assert sat(results, "custom", "memory", 10_000)["offered_per_s"] == 5000  # type: ignore[index]
    assert sat(results, "custom", "memory", 100_000)["offered_per_s"] == 8000  # type: ignore[index]
    assert sat(results, "custom", "sqlite", 100_000) is None
    text = loadgen_scene.section(results, ["saturation.png"])
    assert "5,000" in text and "8,000" in text and "saturation.png" in text
    assert loadgen_scene.plot(results, tmp_path / "saturation.png") is not None


def test_a_late_generator_with_an_idle_server_is_the_generators_limit() -> None:
    from bench import loadgen_scene

    limited = loadgen_scene.limited_by
    assert limited(_step(1000, 800)) == ""
    assert limited(_step(9000, 20_000, queue_p99_us=5000.0, server_cpu_util=0.3)) == "generator"
    assert limited(_step(9000, 20_000, queue_p99_us=5000.0, server_cpu_util=0.95)) == "server"
    # other processes took the vCPUs: neither side is to blame
    assert limited(_step(9000, 20_000, queue_p99_us=5000.0, other_vcpus=1.5)) == "machine"
    # so did other guests, through the hypervisor
    assert limited(_step(9000, 20_000, queue_p99_us=5000.0, steal_vcpus=0.6)) == "machine"


def test_the_ceiling_is_the_highest_rate_the_generator_kept_on_schedule() -> None:
    from bench import loadgen_scene

    echo = {"transport": "null_echo", "engine": "lean"}
    frames = {"transport": "null_echo", "engine": "lean-frames"}
    rows = [
        _step(10_000, 500, **echo),
        _step(50_000, 900, **echo),
        _step(90_000, 4000, queue_p99_us=3000.0, **echo),  # late
        _step(30_000, 700, **frames),
        _step(60_000, 900, sent_fraction=0.9, **frames),  # fell behind
    ]
    top = loadgen_scene.ceiling({"generator": rows})
    assert top is not None and top["offered_per_s"] == 50_000
    # each generator has its own ceiling
    top = loadgen_scene.ceiling({"generator": rows}, "lean-frames")
    assert top is not None and top["offered_per_s"] == 30_000


@pytest.mark.parametrize(
    ("target", "extra", "engine"),
    [
        ({"kind": "chat", "transport": "custom", "address": ["h", 1]}, {}, "lean-frames"),
        ({"kind": "chat", "transport": "protobuf-tcp", "address": ["h", 1]}, {}, "lean-frames"),
        ({"kind": "chat", "transport": "websocket", "address": ["h", 1]}, {}, "lean-ws"),
        ({"kind": "chat", "transport": "grpc", "address": ["h", 1]}, {}, None),
        ({"kind": "chat", "transport": "custom", "address": None}, {}, None),  # in process
        ({"kind": "echo", "ref": "ws_echo"}, {}, "lean-ws"),
        ({"kind": "echo", "ref": "null_echo"}, {}, "lean-frames"),
        ({"kind": "echo", "ref": "null_echo"}, {"engine": "lean-ws"}, "lean-ws"),
        ({"kind": "echo", "ref": "null_echo"}, {"engine": "lean"}, None),
        ({"kind": "echo", "ref": "tcp_echo"}, {}, None),
        ({"kind": "chat", "transport": "custom", "address": ["h", 1]}, {"frames": False}, None),
        ({"kind": "echo", "ref": "ws_echo"}, {"frames": False}, None),
    ],
)
def test_one_rule_names_the_lean_chat_generator_of_a_job(
    target: dict[str, object], extra: dict[str, object], engine: str | None
) -> None:
    """Only a job that asks (``frames``) gets a lean chat generator: the WebSocket one for
    what speaks WebSocket, the frame one for the custom protocol's frames and the ceiling's
    null_echo unless the job names another engine; the rest none (echo generator, client)."""
    from bench.load import lean_chat_engine

    assert lean_chat_engine({"target": target, "frames": True, **extra}) == engine
