"""Issue 14: while the event loop runs far behind, new work that can wait is refused in words.

The server's loop-lag watch (``wirechat.server.LoopLag``) tells the process's one ``Guard`` how
late the loop runs; past ``ServerLimits.shed_lag`` an account search is answered at once with
LIMIT_EXCEEDED "the server is overloaded ...; nothing was done" on custom, protobuf-tcp and
WebSocket, while sends go on and are acknowledged. gRPC sheds its requests that create work
from the same lag (``OVERLOAD_LAG``), where it waited for a full second before.

Before: searches were served whatever the lag (4 scans in flight cost the hostile scene's loop
a twelfth of its time while the canary waited), and a gRPC call had to wait 1 s before any
was refused (17,696 of 36,000 sends ended in their client's deadline instead).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator
from typing import Any

import pytest

from core import ChatService, HashCost, SqliteStore
from core.client import ChatClient
from core.errors import LimitExceeded
from transports import registry
from transports._guard import Guard, ServerLimits
from transports.grpc._limits import LoadMeter
from wirechat.server import LoopLag

pytestmark = pytest.mark.timeout(60)

PASSWORD = "pw-secret-1"
SHEDDING = ["custom", "protobuf-tcp", "websocket"]


def test_the_guard_counts_a_stall_at_once_and_forgets_it_as_the_loop_catches_up() -> None:
    guard = Guard(ServerLimits(shed_lag=0.2))
    assert guard.overloaded() is None
    guard.note_lag(0.5)  # one iteration of half a second
    refusal = guard.overloaded()
    assert refusal is not None and "overloaded" in str(refusal)
    for _ in range(100):  # a second of punctual ticks
        guard.note_lag(0.001)
    assert guard.overloaded() is None


async def test_the_loop_lag_watch_tells_the_guard_when_the_loop_stalls() -> None:
    guard = Guard(ServerLimits(shed_lag=0.2))
    watch = LoopLag(guard)
    watch.start()
    try:
        await asyncio.sleep(0.05)  # punctual ticks
        assert guard.overloaded() is None
        time.sleep(0.4)  # noqa: ASYNC251 - the point: the loop stands still (a long iteration)
        await asyncio.sleep(0.02)  # the next tick sees it
        assert guard.overloaded() is not None
        assert watch.late[-1] == 0 and max(watch.late) >= 1
    finally:
        watch.stop()


@pytest.fixture
async def served(request: pytest.FixtureRequest) -> AsyncIterator[tuple[Guard, ChatClient]]:
    """One transport's in-process server with its own Guard, and a logged-in client."""
    transport = request.param
    service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW)
    await service.store.open()
    guard = Guard(ServerLimits(shed_lag=0.2))
    server: Any = await registry.get(transport).start_server(service, "127.0.0.1", 0, guard=guard)
    clients: list[ChatClient] = []
    try:
        for name in ("searcher", "friend"):
            client = registry.get(transport).open_client(server.address, auto_ack=False)
            clients.append(client)
            await client.connect()
            await client.signup(name, PASSWORD)
        yield guard, clients[0]
    finally:
        for client in clients:
            await client.close()
        await server.close()
        await service.store.close()


@pytest.mark.parametrize("served", SHEDDING, indirect=True)
async def test_a_search_is_refused_in_words_while_the_loop_runs_behind_and_sends_go_on(
    served: tuple[Guard, ChatClient],
) -> None:
    guard, client = served
    assert (await client.list_accounts("fri*")).usernames == ("friend",)
    guard.lag = 1.0  # as the watch would set it after a one-second iteration
    with pytest.raises(LimitExceeded, match=r"overloaded.*nothing was done"):
        await client.list_accounts("fri*")
    sent = await client.send(["friend"], "still served")  # a send is never shed
    assert sent.message_id > 0
    guard.lag = 0.0  # caught up
    assert (await client.list_accounts("fri*")).usernames == ("friend",)


def test_grpc_sheds_from_a_lag_far_below_a_second() -> None:
    """At 0.3 s behind, some gRPC requests that create work are refused (before: none until
    1 s), never more than half."""
    random.seed(14)
    meter = LoadMeter()
    meter.note(0.3)
    refused = sum(meter.refusal() is not None for _ in range(1000))
    assert 0 < refused <= 600


def test_the_hostile_report_counts_the_late_loop_iterations_inside_its_window() -> None:
    from bench.hostile import loop_lags
    from bench.hostile_report import _lag_detail

    lines = [
        "... INFO wirechat.server: loop: lag 25.0 ms at 100.500",
        "... INFO wirechat.server: loop: lag 640.0 ms at 101.000",
        "... INFO wirechat.server: loop: lag 80.0 ms at 250.000",  # (after the window)
        "... INFO wirechat.server: loop: summary ticks=9 >=20ms=3 worst=640ms",
    ]
    found = loop_lags(lines)
    assert found["lags"] == [(100.5, 25.0), (101.0, 640.0), (250.0, 80.0)]
    text = _lag_detail(found, 100.0, 200.0)
    assert text.startswith("2 ticks (>= 50 ms: 1, >= 100 ms: 1, >= 500 ms: 1; worst 640 ms")
    assert "ticks=9" in text
