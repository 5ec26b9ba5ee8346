"""Issue 14: ACK ids and account searches are paced per session below the transports
(core.pacing), so every wire transport holds a flooder to the same rates.

Before, only the custom connection paced them (custom and protobuf-tcp): a client of grpc,
grpc-stream or WebSocket could flood ACKs or scans freely. Here each wire transport in the
registry serves one in-process ChatService with small rates; a flooder's ACKs (or scans) go on
at the paced rate while another session's requests are answered again and again. Unpaced, the
whole flood is worked through in tens of milliseconds, a round trip or two of the canary.

The pacer itself is read with an injected clock: its schedule, to the millisecond, without
sleeping.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from core import ChatService, HashCost, SqliteStore
from core.client import ChatClient
from core.errors import LimitExceeded
from core.pacing import MAX_IN_PROGRESS, SEARCH_REQUEST_CHARGE, Pacing
from transports import registry

pytestmark = pytest.mark.timeout(90)

WAIT = 30.0  # the most a paced flood may take, even on a busy machine
PASSWORD = "pw-secret-1"
#: Canary answers the paced flood must leave room for (unpaced: a round trip or two).
ANSWERED = 20


# -- the pacer's schedule (an injected clock) ------------------------------------------------
class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_acks_wait_exactly_what_their_ids_overspend() -> None:
    """A second's worth at once, then the rate: each ACK past it waits off its own debt."""
    clock = Clock()
    pacer = Pacing(ack_ids_per_second=1000, clock=clock).pacer()
    assert pacer.ack(600) == 0.0  # 400 left
    assert pacer.ack(600) == pytest.approx(0.2)  # 200 short: 0.2 s at 1,000 a second
    clock.now += 0.2  # (waited)
    assert pacer.ack(600) == pytest.approx(0.6)
    clock.now += 0.6
    clock.now += 10.0  # a long pause saves up one second's worth, no more
    assert pacer.ack(1000) == 0.0
    assert pacer.ack(1) == pytest.approx(0.001)


def test_searches_are_charged_their_time_and_the_next_one_waits_it_off() -> None:
    clock = Clock()
    pacer = Pacing(list_accounts_share=0.25, clock=clock).pacer()
    for _ in range(100):  # cheap searches (0.2 ms each) at a person's pace: never slowed
        assert pacer.search() == 0.0
        started = pacer.now()
        clock.now += 0.0002
        pacer.searched(started)
        clock.now += 0.05
    assert pacer.search() == 0.0  # a scan of 0.5 s: two seconds of the allowance
    started = pacer.now()
    clock.now += 0.5
    pacer.searched(started)
    # 0.25 s short, plus the scan's request charge, at 0.25 a second (the cheap ones' charges
    # were refilled in their pauses)
    assert pacer.search() == pytest.approx(1.0 + SEARCH_REQUEST_CHARGE / 0.25)


def test_a_flood_of_cheap_searches_pays_for_the_requests_around_them() -> None:
    """Searches that take the store almost no time (a pattern the index answers) still cost
    the loop a request each: a session gets ~625 a second, not thousands."""
    clock = Clock()
    pacer = Pacing(list_accounts_share=0.25, clock=clock).pacer()
    served = 0
    while clock.now < 110.0:  # ten seconds of back-to-back 0.1 ms searches
        clock.now += pacer.search()  # (waits off the debt, as the service does)
        started = pacer.now()
        clock.now += 0.0001
        pacer.searched(started)
        served += 1
    per_second = 0.25 / (0.0001 + SEARCH_REQUEST_CHARGE)
    assert served <= 10 * per_second + 0.25 / (0.0001 + SEARCH_REQUEST_CHARGE) + 1
    assert served >= 10 * per_second * 0.9


async def test_one_session_may_have_only_a_few_paced_requests_under_way() -> None:
    """Unary gRPC can carry many calls of one session at once: past MAX_IN_PROGRESS waiting
    ACKs, another is refused at once (no sleeping calls parked by the hundred)."""
    service = ChatService(
        SqliteStore(":memory:"), hash_cost=HashCost.LOW, pacing=Pacing(ack_ids_per_second=1)
    )
    try:
        session = service.open_session()
        await service.signup(session, "parker", PASSWORD)
        await service.ack(session, [1])  # the second's worth
        parked = [asyncio.ensure_future(service.ack(session, [1])) for _ in range(MAX_IN_PROGRESS)]
        await asyncio.sleep(0)  # (each has charged its bucket and sleeps)
        with pytest.raises(LimitExceeded, match="already under way"):
            await service.ack(session, [1])
        other = service.open_session()  # another session is not concerned
        await service.signup(other, "other", PASSWORD)
        await service.ack(other, [1])
        for task in parked:
            task.cancel()
        await asyncio.gather(*parked, return_exceptions=True)
        await service.ack(other, [2])  # (cancelled waits gave their places back)
        assert session.pacer is not None and session.pacer.in_progress == 0
    finally:
        await service.shutdown()
        await service.store.close()


# -- every wire transport --------------------------------------------------------------------
async def _serving(transport: str, service: ChatService) -> Any:
    return await registry.get(transport).start_server(service, "127.0.0.1", 0)


async def _user(transport: str, address: Any, name: str) -> ChatClient:
    client = registry.get(transport).open_client(address, auto_ack=False)
    await client.connect()
    await client.signup(name, PASSWORD)
    return client


async def _answered_while(canary: ChatClient, flood: Awaitable[None]) -> int:
    """The canary's requests answered, one after another, until ``flood`` is done."""
    task = asyncio.ensure_future(flood)
    answered = 0
    try:
        async with asyncio.timeout(WAIT):
            while not task.done():
                await canary.list_conversations()
                answered += 1
                await asyncio.sleep(0.005)
            await task  # (its errors, if any)
    finally:
        task.cancel()
    return answered


@pytest.fixture
async def scene(request: pytest.FixtureRequest) -> AsyncIterator[Callable[..., Any]]:
    """``await scene(transport, pacing)``: a server of that transport on 127.0.0.1 and two
    signed-up clients, (flooder, canary); all closed afterwards."""
    opened: list[Any] = []

    async def make(transport: str, pacing: Pacing) -> tuple[ChatService, ChatClient, ChatClient]:
        service = ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW, pacing=pacing)
        server = await _serving(transport, service)
        opened.append((service, server))
        flooder = await _user(transport, server.address, "flooder")
        canary = await _user(transport, server.address, "canary")
        opened.append((flooder, canary))
        return service, flooder, canary

    yield make
    for pair in reversed(opened):
        if isinstance(pair[0], ChatClient):
            for client in pair:
                await client.close()
        else:
            service, server = pair
            await server.close()
            await service.shutdown()
            await service.store.close()


@pytest.mark.parametrize("transport", registry.WIRE_TRANSPORTS)
async def test_an_ack_flood_is_paced_and_others_are_answered_meanwhile(
    transport: str, scene: Callable[..., Any]
) -> None:
    """Eight ACKs of 1,024 ids with 2,048 ids a second allowed: two pass, the others wait
    their turn (~3 s in all), one after another, while the canary is answered throughout."""
    _, flooder, canary = await scene(transport, Pacing(ack_ids_per_second=2048))
    ids = list(range(1_000_000, 1_001_024))  # never pending: pure cost

    async def flood() -> None:
        for _ in range(8):
            await flooder.ack(ids)
        await flooder.list_conversations()  # (answered after the ACKs: they are done)

    answered = await _answered_while(canary, flood())
    assert answered >= ANSWERED, f"only {answered} canary answers while the ACKs were paced"


@pytest.mark.parametrize("transport", registry.WIRE_TRANSPORTS)
async def test_a_burst_of_scans_is_paced_and_others_are_answered_meanwhile(
    transport: str, scene: Callable[..., Any]
) -> None:
    """Searches are charged the time they take: each of these holds the loop 5 ms (what a
    scan over many accounts does; faked in the store, the layer below the service), with
    10 ms of search a second allowed: past the first two each waits ~0.5 s, while the canary
    is answered throughout. Unpaced, all eight are answered in ~40 ms."""
    service, scanner, canary = await scene(transport, Pacing(list_accounts_share=0.01))
    search = service.store.list_accounts

    async def scan(*args: Any, **kwargs: Any) -> Any:
        time.sleep(0.005)  # noqa: ASYNC251 (blocks the loop on purpose, as a scan does)
        return await search(*args, **kwargs)

    service.store.list_accounts = scan

    async def scans() -> None:
        for _ in range(8):
            await scanner.list_accounts("zz*")

    answered = await _answered_while(canary, scans())
    assert answered >= ANSWERED, f"only {answered} canary answers while searches were paced"
