"""Issue 14: a burst of connects is accepted a bounded number per loop iteration.

The event loop's own accept (libuv) takes every connection waiting in the kernel's queue in
one go, each a descriptor and a connection object before any is counted or refused: the cap
had to leave a whole listen backlog (2,048) of descriptors free, and one loop iteration set
up thousands of a flood's connections while every session waited. The custom listeners now
accept ``accepts_per_turn`` per iteration (``transports.custom._bounds.Acceptor``), so the cap
leaves only that many (plus the lingering refusals), and the listen backlog can be the
kernel's largest (4,096) at no cost in descriptors.

In-process on 127.0.0.1. "Per loop iteration" is read with a callback that re-schedules itself
with ``call_soon`` (once per iteration), never with a clock. Each test fails on the code before.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import pytest
from test_custom_limits import WAIT, Peer, serving  # (a sibling module)

from core import ChatService
from transports import _guard
from transports._guard import FD_RESERVE, REFUSED_LINGERING, ServerLimits, _fd_ceiling
from transports.custom import Error, ErrorCode, _accept, _server
from transports.custom._server import CustomServer

pytestmark = pytest.mark.timeout(60)

BURST = 120

T = TypeVar("T")


async def test_a_burst_of_connects_is_accepted_a_few_per_loop_iteration(
    service: ChatService,
) -> None:
    async with serving(service, accepts_per_turn=8) as server:
        # Connected by the kernel while the loop stands still (blocking connects on the loop's
        # own thread): all of them wait in the listen queue when the loop looks next.
        held = [socket.create_connection(server.address, timeout=WAIT) for _ in range(BURST)]
        try:
            seen = await _each_iteration(lambda: len(server._connections), lambda n: n >= BURST)
            steps = [b - a for a, b in itertools.pairwise(seen)]
            assert max(steps) <= 2 * 8, f"{max(steps)} connections set up in one loop iteration"
            assert server.guard.connections == BURST  # every one admitted in the end
            peer = await Peer().greeted(server.address)  # and the listener goes on
            peer.close()
        finally:
            for sock in held:
                sock.close()


def test_the_cap_leaves_only_the_uncounted_accepts_of_descriptors_and_the_backlog_is_long() -> None:
    limits = ServerLimits()
    usable = _fd_ceiling() - FD_RESERVE
    room = min(REFUSED_LINGERING + limits.uncounted(), usable // 5)
    assert limits.connection_cap() == max(16, usable - room)
    assert limits.backlog >= 4096 > limits.accepts_per_turn


async def test_past_the_lingering_refusals_a_connection_is_refused_at_its_accept(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With the server full and REFUSED_LINGERING refusals lingering, the next connections
    are refused at their accept: each still reads ERROR SERVER_BUSY with the reason, but no
    connection object is ever made for it (before: each was set up, then refused)."""
    monkeypatch.setattr(_guard, "REFUSED_LINGERING", 2)
    monkeypatch.setattr(_server, "LINGER", 60.0)  # (the lingering ones stay for the test)
    made = 0
    real = CustomServer._new_connection

    def counted(self: CustomServer) -> Any:
        nonlocal made
        made += 1
        return real(self)

    monkeypatch.setattr(CustomServer, "_new_connection", counted)
    async with serving(service, max_connections=1, max_connections_per_address=1) as server:
        held = await Peer().greeted(server.address)  # (from 127.0.0.1: its one place)
        lingering = [await Peer().open(server.address, source="127.0.0.2") for _ in range(2)]
        for peer in lingering:
            [error] = await peer.events(1)
            assert isinstance(error, Error) and error.code is ErrorCode.SERVER_BUSY
        assert made == 3 and server.guard.lingering_full
        refused = []
        # (two reasons, each in its own words: the address's cap, and the server's)
        for source, why in [("127.0.0.1", "too many connections from 127.0.0.1"),
                            ("127.0.0.3", "the server is full")] * 3:  # fmt: skip
            peer = await Peer().open(server.address, source=source)
            refused.append(peer)
            events = await peer.until_closed()
            [error] = [e for e in events if isinstance(e, Error)]
            assert error.code is ErrorCode.SERVER_BUSY and why in error.message
        assert made == 3  # (refused at the accept: no connection was set up for them)
        for peer in [held, *lingering, *refused]:
            peer.close()


async def test_while_the_loop_runs_behind_a_crowded_address_waits_and_a_person_does_not(
    service: ChatService,
) -> None:
    """The loop runs behind (``Guard.lag``, as the server's watch sets it): connections from
    an address that already holds ``crowded`` connections without a session are set up
    CROWD_SETUPS per loop iteration, after a connection from another address, and all of
    them in the end (none refused). Before: all set up together, the person's among them."""
    async with serving(service, crowded=3) as server:
        crowd = [await Peer().greeted(server.address, source="127.0.0.2") for _ in range(3)]
        server.guard.lag = 1.0
        # queued while the loop stands still (blocking connects on its own thread)
        queued = [_connect(server.address, "127.0.0.2") for _ in range(40)] + [
            _connect(server.address, "127.0.0.3")
        ]
        try:

            def sample() -> tuple[int, bool]:
                person = any(c._host == "127.0.0.3" for c in server._connections)
                return len(server._connections), person

            seen = await _each_iteration(sample, lambda s: s[0] >= 3 + 41)
            steps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
            assert max(steps) <= 2 * _accept.CROWD_SETUPS + 1, steps
            first = next(i for i, (_, person) in enumerate(seen) if person)
            assert seen[first][0] < 3 + 41 - _accept.CROWD_SETUPS  # (the person went first)
        finally:
            for sock in queued:
                sock.close()
            for peer in crowd:
                peer.close()


async def _each_iteration(sample: Callable[[], T], enough: Callable[[T], bool]) -> list[T]:
    """``sample()`` once per loop iteration (a callback that re-schedules itself with
    ``call_soon``, never a clock) until ``enough`` holds for a sample, within WAIT: every
    sample, in order."""
    loop = asyncio.get_running_loop()
    seen: list[T] = []
    done = loop.create_future()

    def tick() -> None:
        seen.append(sample())
        if enough(seen[-1]):
            done.set_result(None)
        else:
            loop.call_soon(tick)

    loop.call_soon(tick)
    async with asyncio.timeout(WAIT):
        await done
    return seen


def _connect(address: tuple[str, int], source: str) -> socket.socket:
    sock = socket.socket()
    sock.bind((source, 0))
    sock.settimeout(WAIT)
    sock.connect(address)
    return sock
