"""Shared by the lean generators' tests (tests/unit/test_bench_load.py, echo frames, and
tests/unit/test_bench_loadgen_frames.py, the custom protocol's frames): the null responder
and one open-loop run of a schedule that every request must come through."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Any

from bench.load import LoadResult, OpenLoopSchedule, timing_fields

MS = 1_000_000


async def null_echo() -> tuple[asyncio.AbstractServer, tuple[str, int]]:
    """The null responder (writes back whatever arrives) on a free port of 127.0.0.1."""
    from bench.refs import null_echo as responder

    server, port = await responder.start("127.0.0.1", 0)
    return server, ("127.0.0.1", port)


class FakeTransport:
    """What a lean generator's connection (LeanFrames, LeanWs) writes, and whether it
    closed the connection: for feeding its frames by hand, without a server."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True


def echo_target(address: tuple[str, int]) -> dict[str, Any]:
    """A load job's target: the null responder at ``address``, served by this process."""
    import os

    return {"kind": "echo", "ref": "null_echo", "address": list(address), "server_pid": os.getpid()}


async def open_loop_of_200(open_loop: Callable[..., Awaitable[LoadResult]]) -> LoadResult:
    """``open_loop(schedule, max_inflight=, deadline_ns=, drain_s=)`` (a generator's open
    loop with its connections bound) at 2,000 requests/s for 200 requests, a generous cap."""
    start = time.perf_counter_ns() + 2 * MS
    return await open_loop(
        OpenLoopSchedule(2000, start, 200),
        max_inflight=1000,
        deadline_ns=start + 10**10,
        drain_s=5.0,
    )


def assert_every_request_answered(result: LoadResult) -> None:
    """All 200 requests of ``open_loop_of_200`` sent, answered and timed once, latency from
    the intended time (so at least the service time, from the sent time)."""
    assert (result.sent, result.completed, result.timeouts, result.errors) == (200, 200, 0, 0)
    fields: dict[str, Any] = timing_fields(result)
    assert fields["n"] == 200 and fields["sent_fraction"] == 1.0
    assert fields["p50_us"] >= fields["service_p50_us"]  # from intended >= from sent
