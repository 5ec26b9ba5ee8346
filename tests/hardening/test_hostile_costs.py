"""Issue 14, what the hostile scene's attackers cost the server (custom and protobuf-tcp share
the drivers), in-process with small numbers:

* a frame before a login is small: a session-less connection announcing a bigger one gets
  FRAME_TOO_LARGE at its header, and the server holds none of it (the scene's 20,000
  connections each sent ~60 KB of a maximal frame after HELLO: 905 MB read and dropped);
* refused connections linger only while few do (1,000 refused storm connects lingered with
  1,000 descriptors beyond the cap, accept() failed with EMFILE and libuv closed every
  queued connection without a word), and the cap leaves one listen backlog of descriptors
  for the connections the loop accepts in one go before it can refuse any;
* ACKs and LIST_ACCOUNTS of one session are paced (an ACK flood and four scans in flight
  took a sixth and an eighth of the server's CPU): the flood goes on at the paced rate while
  another connection is answered throughout, and the flooder's connection is not read
  meanwhile (its pipelined frames wait; test_pacing.py tries every transport).

Each test fails on the code before the change it covers.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from test_custom_limits import (
    WAIT,
    Peer,
    serving,
)  # (a sibling module: tests/hardening is on sys.path)

from core import ChatService
from core.pacing import Pacing
from transports import _guard
from transports._guard import FD_RESERVE, REFUSED_LINGERING, ServerLimits
from transports.custom import (
    Ack,
    Error,
    ErrorCode,
    ListAccounts,
    LoggedOut,
    Logout,
    Ping,
    Pong,
    SignedUp,
    Signup,
    _server,
)
from transports.custom._wire import put_varint

pytestmark = pytest.mark.timeout(60)


# -- frames before a login ------------------------------------------------------------------
async def test_a_large_frame_before_a_login_is_refused_at_its_header(
    service: ChatService,
) -> None:
    async with serving(service) as server:
        anonymous = await Peer().greeted(server.address)
        head = bytearray()
        put_varint(head, 60_000)  # a 60 KB frame announced, 2 KB of it sent
        anonymous.writer.write(bytes(head) + b"\x09\x01" + b"x" * 2_000)
        events = await anonymous.until_closed()
        [error] = [e for e in events if isinstance(e, Error)]
        assert (error.request_id, error.code) == (0, ErrorCode.FRAME_TOO_LARGE)
        assert "before a login" in error.message
        assert server.guard.inbound == 0  # none of it held

        # Logged in, the protocol's own limit applies; logged out, the small one again.
        user = await Peer().greeted(server.address)
        user.send(Signup(1, "large", "pw-secret-1"))
        assert await user.events(1) == [SignedUp(1, 0)]
        user.send(Ping(2, b"p" * 60_000))
        assert await user.events(1) == [Pong(2, b"p" * 60_000)]
        user.send(Logout(3))
        assert await user.events(1) == [LoggedOut(3)]
        user.send(Ping(4, b"p" * 60_000))
        events = await user.until_closed()
        assert [(e.request_id, e.code) for e in events if isinstance(e, Error)] == [
            (0, ErrorCode.FRAME_TOO_LARGE)
        ]


async def test_the_largest_login_fits_under_the_limit_before_a_login(
    service: ChatService,
) -> None:
    """A SIGNUP with the longest name and password the limits allow is not refused for its
    size (its own checks answer it)."""
    async with serving(service) as server:
        peer = await Peer().greeted(server.address)
        frame = peer.codec.send(Signup(1, "\U0001f600" * 128, "p" * 256))
        assert len(frame) <= ServerLimits().max_frame_before_login
        peer.writer.write(frame)
        [reply] = await peer.events(1)
        assert isinstance(reply, Error) and reply.code is not ErrorCode.FRAME_TOO_LARGE


# -- descriptors: refused connections and the accept burst -----------------------------------
def test_the_connection_cap_leaves_a_listen_backlog_of_descriptors() -> None:
    limits = ServerLimits()
    descriptors = _guard._fd_ceiling()
    assert limits.backlog >= 1000 + 768  # a 1,000-connect storm and a flood's connects
    usable = descriptors - FD_RESERVE
    # (the connections accepted before any is counted, not the backlog: test_accept_turns.py)
    room = min(REFUSED_LINGERING + limits.uncounted(), usable // 5)  # (a fifth at most)
    assert limits.connection_cap() == max(16, usable - room)
    if usable >= 5 * (REFUSED_LINGERING + limits.uncounted()):  # (this machine: 20,000)
        assert limits.connection_cap() == usable - REFUSED_LINGERING - limits.uncounted()


async def test_refused_connections_beyond_the_lingering_bound_close_at_once(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_guard, "REFUSED_LINGERING", 2)
    monkeypatch.setattr(_server, "LINGER", 60.0)  # (a lingering one stays for the test)
    async with serving(service, max_connections=1) as server:
        held = await Peer().greeted(server.address)
        refused = [await Peer().open(server.address) for _ in range(6)]
        for peer in refused:  # each is told why, whether it lingers or not
            [error] = await peer.events(1)
            assert isinstance(error, Error) and error.code is ErrorCode.SERVER_BUSY
        # (they keep their sockets open: only the server's own bound closes theirs)
        async with asyncio.timeout(WAIT):
            while len(server._connections) > 1 + 2:  # noqa: ASYNC110 - a counter
                await asyncio.sleep(0.02)
        assert server.guard.lingering_refused == 2
        for peer in [held, *refused]:
            peer.close()
        async with asyncio.timeout(WAIT):
            while server.guard.lingering_refused:  # noqa: ASYNC110 - a counter
                await asyncio.sleep(0.02)


# -- paced requests --------------------------------------------------------------------------
async def receive(peer: Peer, wanted: object) -> list[object]:
    """Events of ``peer`` up to and including ``wanted``."""
    found: list[object] = []
    while not found or found[-1] != wanted:
        found += await peer.events(1)
    return found


async def canary_round_trips_while(canary: Peer, flood: Peer, end: Pong) -> int:
    """Canary PINGs, one at a time, until ``flood`` receives ``end``; how many were answered."""
    answered = 0
    waiting = asyncio.ensure_future(receive(flood, end))
    try:
        async with asyncio.timeout(WAIT * 4):
            while not waiting.done():
                canary.send(Ping(answered + 1, b"canary"))
                assert await canary.events(1) == [Pong(answered + 1, b"canary")]
                answered += 1
                await asyncio.sleep(0.005)
        await waiting
    finally:
        waiting.cancel()
    return answered


async def test_an_ack_flood_is_paced_and_others_are_answered_meanwhile(
    service: ChatService,
) -> None:
    """Eight ACKs of 1,024 ids with 2,048 ids a second allowed: the first two pass, the
    others wait their turn (~3 s in all) while a canary is answered again and again.
    Unpaced, the flood is worked through in milliseconds: a round trip or two."""
    service.pacing = Pacing(ack_ids_per_second=2048)  # (per session, in the service)
    async with serving(service) as server:
        canary = await Peer().greeted(server.address)
        flood = await Peer().greeted(server.address, source="127.0.0.2")
        flood.send(Signup(1, "flooder", "pw-secret-1"))
        assert await flood.events(1) == [SignedUp(1, 0)]
        ack = Ack(tuple(range(1_000_000, 1_001_024)))  # never pending: pure cost
        flood.send(*[ack] * 8, Ping(2, b"end"))
        answered = await canary_round_trips_while(canary, flood, Pong(2, b"end"))
        assert answered >= 10, f"only {answered} canary round trips while the ACKs were paced"


async def test_account_searches_are_paced(
    service: ChatService, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Searches are charged the time they take: a scanner whose searches each hold the loop
    5 ms (what a scan over many accounts does; faked here in the store, the layer below the
    service, which paces) with 10 ms of search a second allowed waits ~0.5 s before each one
    past the first two, while a canary is answered again and again. Unpaced, all 8 are
    answered in ~40 ms: a round trip or two."""
    search = service.store.list_accounts

    async def scan(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.005)  # noqa: ASYNC251 (blocks the loop on purpose, as a scan does)
        return await search(*args, **kwargs)

    monkeypatch.setattr(service.store, "list_accounts", scan)
    service.pacing = Pacing(list_accounts_share=0.01)
    async with serving(service) as server:
        canary = await Peer().greeted(server.address)
        scanner = await Peer().greeted(server.address, source="127.0.0.2")
        scanner.send(Signup(1, "scanner", "pw-secret-1"))
        assert await scanner.events(1) == [SignedUp(1, 0)]
        scanner.send(*[ListAccounts(i, "zz*") for i in range(2, 10)], Ping(99, b"end"))
        answered = await canary_round_trips_while(canary, scanner, Pong(99, b"end"))
        assert answered >= 10, f"only {answered} canary round trips while searches were paced"
