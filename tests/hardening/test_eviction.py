"""Issue 14 under pressure: when the connection cap is full, connections without a session give
way to new ones, oldest first, and connections with a session never do (docs/LIMITS.md, "When
the server is full"; ``transports._guard.Guard``).

Each test fails on the code before the policy: there a full server refused every new
connection (ERROR SERVER_BUSY / HTTP 503) for as long as idle sockets held the cap, so 20,000
idle sockets from 253 addresses kept the account's owner and a storm of new clients out.
Servers run in-process on 127.0.0.1 with a cap of a few connections and a short grace.
"""

from __future__ import annotations

import asyncio
import json

import pytest
from test_custom_limits import WAIT, Peer, refusal, serving
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from core import ChatService
from transports import protobuf_tcp
from transports._guard import Guard, ServerLimits
from transports.custom import Connection, Error, ErrorCode, Ping, Pong, SignedUp, Signup
from transports.custom._codec import CodecFactory
from transports.websocket import start_server as start_websocket
from transports.websocket._messages import PATH, SUBPROTOCOL

pytestmark = pytest.mark.timeout(60)
GRACE = 0.3  # eviction_grace of these servers: seconds a connection is safe from eviction


def timed_out_while_full(events: list[object]) -> bool:
    """The connection got ERROR TIMED_OUT saying the server is full (the eviction)."""
    errors = [e for e in events if isinstance(e, Error)]
    return (
        len(errors) == 1
        and errors[0].code == ErrorCode.TIMED_OUT
        and "while the server is full" in errors[0].message
    )


@pytest.mark.parametrize("codec", [Connection, protobuf_tcp.Connection], ids=["custom", "pb"])
async def test_a_new_connection_evicts_the_longest_waiting_one_when_the_server_is_full(
    service: ChatService, codec: CodecFactory
) -> None:
    async with serving(service, codec, max_connections=3, eviction_grace=GRACE) as server:
        idle = [await Peer(codec).greeted(server.address) for _ in range(3)]
        await asyncio.sleep(GRACE + 0.1)
        # Before: ERROR SERVER_BUSY "the server is full (3 connections)" for the newcomer.
        newcomer = await Peer(codec).greeted(server.address, source="127.0.0.2")
        assert timed_out_while_full(await idle[0].until_closed())
        newcomer.send(Ping(1, b"in"))
        assert await newcomer.events(1) == [Pong(1, b"in")]
        for peer in idle[1:]:  # the others are still there, and answered
            peer.send(Ping(2, b"still"))
            assert await peer.events(1) == [Pong(2, b"still")]
        assert server.guard.connections == 3 and server.guard.evicted == 1


async def test_logged_in_connections_are_never_evicted(service: ChatService) -> None:
    async with serving(service, max_connections=2, eviction_grace=GRACE) as server:
        user = await Peer().greeted(server.address)
        user.send(Signup(1, "resident", "pw-12345678"))
        assert await user.events(1) == [SignedUp(1, 0)]
        idle = await Peer().greeted(server.address, source="127.0.0.2")
        await asyncio.sleep(GRACE + 0.1)
        newcomer = await Peer().greeted(server.address, source="127.0.0.3")  # idle's place
        assert timed_out_while_full(await idle.until_closed())
        await asyncio.sleep(GRACE + 0.1)
        # Full again: the newcomer waits without a session, the user has one. The next
        # connection evicts the newcomer, never the user.
        last = await Peer().greeted(server.address, source="127.0.0.4")
        assert timed_out_while_full(await newcomer.until_closed())
        user.send(Ping(2, b"here"))
        assert await user.events(1) == [Pong(2, b"here")]
        last.close()


async def test_connections_within_the_grace_are_not_evicted(service: ChatService) -> None:
    # An attacker who reconnects as fast as it can evicts only connections older than the
    # grace: a full server of young connections refuses, it does not churn.
    async with serving(service, max_connections=2, eviction_grace=30.0) as server:
        held = [await Peer().greeted(server.address) for _ in range(2)]
        refused = await Peer().open(server.address)
        assert refusal(await refused.until_closed()) == (0, ErrorCode.SERVER_BUSY)
        for peer in held:
            peer.send(Ping(1, b"kept"))
            assert await peer.events(1) == [Pong(1, b"kept")]


async def test_a_fresh_address_takes_a_place_from_the_address_holding_most(
    service: ChatService,
) -> None:
    # 20,000 idle sockets from 253 addresses, all younger than the grace because the flood
    # reconnected as fast as it was evicted: before, the account's owner (from an address
    # with nothing waiting) was refused "the server is full" or queued for seconds.
    async with serving(service, max_connections=4, eviction_grace=30.0) as server:
        flood = [await Peer().greeted(server.address, source="127.0.0.2") for _ in range(3)]
        other = await Peer().greeted(server.address, source="127.0.0.3")
        owner = await Peer().greeted(server.address, source="127.0.0.9")  # within the grace
        assert timed_out_while_full(await flood[0].until_closed())
        for peer in [owner, other, *flood[1:]]:
            peer.send(Ping(1, b"in"))
            assert await peer.events(1) == [Pong(1, b"in")]
        assert server.guard.evicted == 1 and server.guard.waiting_from("127.0.0.2") == 2


async def test_an_address_holding_its_share_cannot_churn_the_others_out(
    service: ChatService,
) -> None:
    # The flood's own reconnections: an address already holding as many waiting connections
    # as the others is refused at once, even past the grace; before, each evicted the oldest
    # socket of any address (a WELCOME and an eviction per connect, as fast as the server
    # accepted), and an honest connect queued behind them.
    async with serving(service, max_connections=4, eviction_grace=GRACE) as server:
        held = [
            await Peer().greeted(server.address, source=source)
            for source in ("127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3")
        ]
        await asyncio.sleep(GRACE + 0.1)
        again = await Peer().open(server.address, source="127.0.0.2")
        assert refusal(await again.until_closed()) == (0, ErrorCode.SERVER_BUSY)
        for peer in held:
            peer.send(Ping(1, b"kept"))
            assert await peer.events(1) == [Pong(1, b"kept")]
        assert server.guard.evicted == 0


class _Waiter:
    """A waiting connection as the Guard sees it (``transports._guard.Waiting``)."""

    def __init__(self, guard: Guard, address: str, busy: bool = False) -> None:
        self.guard, self.address, self.busy, self.evicted = guard, address, busy, False

    def evict(self, waited: float) -> bool:
        if self.busy:
            return False
        self.evicted = True
        self.guard.settled(self)
        self.guard.release(self.address)
        return True


def _admitted(guard: Guard, address: str, busy: bool = False) -> _Waiter | None:
    if guard.admit(address) is not None:
        return None
    waiter = _Waiter(guard, address, busy)
    guard.waiting(waiter, address)
    return waiter


def test_the_guard_shares_waiting_places_fairly_between_addresses() -> None:
    guard = Guard(ServerLimits(max_connections=8, eviction_grace=3600.0))
    a = [_admitted(guard, "10.0.0.1") for _ in range(5)]
    b = [_admitted(guard, "10.0.0.2") for _ in range(3)]
    assert guard.connections == 8 and None not in a + b
    # b (3, would hold 4) is not under half of a (5): refused, nobody is evicted
    assert _admitted(guard, "10.0.0.2") is None and guard.evicted == 0
    # a fresh address takes a's oldest place, and the next (a holds 4, twice .3's 2)...
    assert _admitted(guard, "10.0.0.3") is not None and _admitted(guard, "10.0.0.3") is not None
    assert [w.evicted for w in a if w is not None] == [True, True, False, False, False]
    assert _admitted(guard, "10.0.0.3") is None  # ...not a third: a's 3 is not twice 3
    # settled (logged in) connections no longer count for their address
    for waiter in b:
        guard.settled(waiter)  # type: ignore[arg-type]
    assert guard.waiting_from("10.0.0.2") == 0
    # a connection being served (a login being checked) is never evicted: the next is
    a[2].busy = True  # type: ignore[union-attr]
    assert _admitted(guard, "10.0.0.4") is not None
    assert [w.evicted for w in a if w is not None] == [True, True, False, True, False]
    assert guard.waiting_from("10.0.0.1") == 2 and guard.connections == 8
    assert guard.waiting_count == 5 and guard.evicted == 3


async def test_a_websocket_connection_without_a_session_gives_way_when_the_server_is_full(
    service: ChatService,
) -> None:
    guard = Guard(ServerLimits(max_connections=1, eviction_grace=GRACE))
    server = await start_websocket(service, "127.0.0.1", 0, guard=guard)
    url = f"ws://{server.address[0]}:{server.address[1]}{PATH}"
    try:
        idle = await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=WAIT)  # type: ignore[list-item]
        await asyncio.sleep(GRACE + 0.1)
        # Before: HTTP 503 "the server is full (1 connections)" for the newcomer.
        newcomer = await connect(
            url,
            subprotocols=[SUBPROTOCOL],  # type: ignore[list-item]
            open_timeout=WAIT,
            local_addr=("127.0.0.2", 0),  # (another address: rule 2 of transports._guard)
        )
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(idle.recv(), WAIT)
        assert closed.value.rcvd is not None and closed.value.rcvd.code == 1008
        assert "while the server is full" in closed.value.rcvd.reason
        signup = {"id": 1, "op": "signup", "username": "late", "password": "pw-12345678"}
        await newcomer.send(json.dumps(signup))
        assert "ok" in json.loads(await asyncio.wait_for(newcomer.recv(), WAIT))
        # Logged in, the newcomer is never evicted: the next one is refused.
        await asyncio.sleep(GRACE + 0.1)
        with pytest.raises(InvalidStatus) as refused:
            await connect(url, subprotocols=[SUBPROTOCOL], open_timeout=WAIT)  # type: ignore[list-item]
        assert refused.value.response.status_code == 503
        await newcomer.close()
    finally:
        await server.close()


async def test_grpc_raw_connections_are_taken_off_the_descriptor_derived_cap(
    service: ChatService,
) -> None:
    # grpc-core's connections are invisible to the Guard; before, the Guard's cap was the whole
    # descriptor limit (minus 64) and gRPC's quota came on top: an idle flood on the custom port
    # plus the gRPC clients reached 20,000 descriptors of 20,000 (accept() fails with EMFILE).
    from transports.grpc import start_server as start_grpc
    from transports.grpc._limits import raw_connections

    guard = Guard()
    whole = guard.cap
    server = await start_grpc(service, "127.0.0.1", 0, guard=guard)
    try:
        assert guard.cap == whole - raw_connections(guard.limits, whole) < whole
    finally:
        await server.close()
    chosen = Guard(ServerLimits(max_connections=50))  # a cap set by hand stays as it is
    server = await start_grpc(service, "127.0.0.1", 0, guard=chosen)
    try:
        assert chosen.cap == 50
    finally:
        await server.close()
