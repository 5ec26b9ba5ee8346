"""Issue 14, the hostile scene's mass events on the custom transport: what a flood does to
thousands of connections at once must not become one long turn of the event loop.

* Idle and partial-frame timeouts are spread (``ServerLimits.timeout_spread``): connections
  opened in one burst do not time out in one burst (the scene's flood opened ~16,000 in its
  first seconds; 60 s later the server ended them together, the canary's worst stalls).
* A sweep ends at most SWEEP_ENDS connections per loop iteration.
* Connections without a session whose clients close at once are taken down ENDS_PER_TURN per
  loop iteration (the flood's teardown: every EOF in one iteration, a ~1.3 s stall).

In-process on 127.0.0.1 with small numbers. "Per loop iteration" is read with a callback that
re-schedules itself with ``call_soon`` (it runs once per iteration), never with a clock. Each
test fails on the code before its change.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from collections.abc import Callable

import pytest
from test_custom_limits import (  # (a sibling module: tests/hardening is on sys.path)
    WAIT,
    Peer,
    serving,
)

from core import ChatService
from transports.custom import Error, ErrorCode, _bounds
from transports.custom._server import CustomServer

pytestmark = pytest.mark.timeout(60)


async def _idle_peers(server: CustomServer, count: int) -> list[Peer]:
    """``count`` connections that said HELLO and nothing more, from 127.0.0.2-9 (each
    address under its cap of 256)."""
    return list(
        await asyncio.gather(
            *(Peer().greeted(server.address, source=f"127.0.0.{2 + i % 8}") for i in range(count))
        )
    )


async def _per_iteration(read: Callable[[], int], done: Callable[[], bool]) -> list[int]:
    """``read()`` once per loop iteration until ``done()``."""
    loop = asyncio.get_running_loop()
    seen: list[int] = []
    finished = loop.create_future()

    def tick() -> None:
        seen.append(read())
        if done():
            finished.set_result(None)
        else:
            loop.call_soon(tick)

    loop.call_soon(tick)
    async with asyncio.timeout(WAIT * 4):
        await finished
    return seen


async def test_connections_opened_together_time_out_spread_over_time(
    service: ChatService,
) -> None:
    """Forty connections idle since the same moment: at 90 % of the idle timeout some, not
    all, are told TIMED_OUT; by 125 % all are. Unspread, none at 90 %, then all at once."""
    random.seed(14)  # (each connection draws its own factor)
    async with serving(service, idle_timeout=60) as server:  # (the sweeper never fires here)
        peers = await _idle_peers(server, 40)
        connections = list(server._connections)
        since = max(c._idle_since or 0.0 for c in connections)
        for connection in connections:
            connection.police(since + 0.9 * 60)
        early = sum(c._closing for c in connections)
        assert 0 < early < 40, f"{early} of 40 connections timed out at 90 % of the timeout"
        for connection in connections:
            connection.police(since + 1.25 * 60)
        assert all(c._closing for c in connections)
        for peer in peers:
            events = await peer.until_closed()
            [error] = [e for e in events if isinstance(e, Error)]
            assert error.code == ErrorCode.TIMED_OUT
            assert "no login within" in error.message


async def test_a_sweep_ends_a_bounded_number_of_connections_per_loop_iteration(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Sixty idle connections time out in the same sweep (no spread): the sweep ends at most
    SWEEP_ENDS of them per loop iteration, every one of them in the end."""
    monkeypatch.setattr(_bounds, "SWEEP_ENDS", 8)
    async with serving(service, idle_timeout=0.5, timeout_spread=0.0) as server:
        peers = await _idle_peers(server, 60)
        connections = list(server._connections)

        def ended() -> int:
            return sum(c._closing for c in connections)

        seen = await _per_iteration(ended, lambda: ended() == len(connections))
        steps = [b - a for a, b in itertools.pairwise(seen)]
        assert max(steps) <= 8, f"{max(steps)} connections ended in one loop iteration"
        for peer in peers:
            peer.close()


async def test_a_mass_close_is_taken_down_over_several_loop_iterations(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Three hundred connections without a session whose clients all close at once: the
    server takes them down at most ENDS_PER_TURN per loop iteration (each connection's end
    is one step: its EOF, then its close), and all of them go."""
    monkeypatch.setattr(_bounds, "ENDS_PER_TURN", 16)
    async with serving(service) as server:
        peers = await _idle_peers(server, 300)
        assert len(server._connections) == 300
        for peer in peers:
            peer.close()
        seen = await _per_iteration(
            lambda: len(server._connections), lambda: not server._connections
        )
        drops = [a - b for a, b in itertools.pairwise(seen)]
        assert max(drops) <= 2 * 16, f"{max(drops)} connections went in one loop iteration"
        assert server.guard.connections == 0  # (every place given back)
