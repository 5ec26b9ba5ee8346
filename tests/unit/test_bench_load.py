"""The open-loop scheduler: intended send times, and latency counted from them.

These run the real dispatcher against simulated time (a tiny discrete-event clock), so the
assertions are exact and nothing depends on how fast this machine is.
"""

from __future__ import annotations

import asyncio

import pytest

from bench.load import OpenLoopSchedule, run_closed_loop, run_open_loop
from bench.stats import summarize

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
