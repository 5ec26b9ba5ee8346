"""A command the chat server shed as overloaded (nothing was done) is retried by the web
gateway a few times before a person sees the server's sentence (ui.web.patience); other
refusals reach the page at once. CI once failed a browser test on one shed signup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from core import AuthFailed, ChatService, HashCost, SqliteStore
from core.errors import Overloaded
from core.pacing import Pacing
from transports import registry
from ui.web.gateway import Gateway, GatewayError
from ui.web.loop import LoopThread
from ui.web.patience import WAITS, retry_shed

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

PASSWORD = "pw-secret-1"
BUSY = "the server is overloaded (requests wait 361 ms); nothing was done: try again in a moment"


def shed_first(monkeypatch: pytest.MonkeyPatch, service: Any, name: str, times: int) -> list[int]:
    """Make ``service.<name>`` refuse its first ``times`` calls as overloaded (0: it only
    counts); the list counts the calls."""
    method: Callable[..., Awaitable[Any]] = getattr(service, name)
    calls = [0]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise Overloaded(BUSY)
        return await method(*args, **kwargs)

    monkeypatch.setattr(service, name, flaky)
    return calls


def test_a_signup_shed_twice_still_signs_in(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = local_gateway.service
    calls = shed_first(monkeypatch, service, "signup", 2)
    _, result = local_gateway.gateway.signup("ann", PASSWORD)
    assert (result.username, calls[0]) == ("ann", 3)
    assert service.live_sessions("ann") == 1  # the refused tries left no session behind
    assert local_gateway.gateway.live_sessions == 1


def test_a_server_that_stays_busy_gets_its_sentence_shown(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = local_gateway.service
    calls = shed_first(monkeypatch, service, "signup", 100)
    with pytest.raises(Overloaded, match="nothing was done"):
        local_gateway.gateway.signup("bo", PASSWORD)
    assert calls[0] == len(WAITS) + 1
    assert local_gateway.gateway.live_sessions == 0


def test_a_shed_send_is_sent_once(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, service = local_gateway.gateway, local_gateway.service
    kim, _ = gateway.signup("kim", PASSWORD)
    lee, _ = gateway.signup("lee", PASSWORD)
    calls = shed_first(monkeypatch, service, "send", 1)
    sent = gateway.send(kim, ["lee"], "after a busy moment")
    assert calls[0] == 2
    page = gateway.history(lee, participants=["kim"])
    assert [(m.message_id, m.body) for m in page.messages] == [
        (sent.message_id, "after a busy moment")
    ]


def test_other_refusals_are_not_retried(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    gateway, service = local_gateway.gateway, local_gateway.service
    chat, _ = gateway.signup("cy", PASSWORD)
    gateway.logout(chat)
    calls = shed_first(monkeypatch, service, "login", 0)  # counts, sheds none
    with pytest.raises(AuthFailed):
        gateway.login("cy", "wrong")
    assert calls[0] == 1

    chat, _ = gateway.signup("dee", PASSWORD)
    sends = shed_first(monkeypatch, service, "send", 0)
    with pytest.raises(GatewayError):
        gateway.send(chat, ["dee"], "x" * 1_000_000)  # too long: refused once, not retried
    assert sends[0] == 1


def test_retry_waits_grow_and_are_bounded() -> None:
    waited: list[float] = []

    async def sleep(seconds: float) -> None:
        waited.append(seconds)

    async def always_busy() -> None:
        raise Overloaded(BUSY)

    with pytest.raises(Overloaded):
        asyncio.run(retry_shed(always_busy, sleep=sleep))
    assert len(waited) == len(WAITS)
    for wait, ceiling in zip(waited, WAITS, strict=True):
        assert ceiling / 2 <= wait <= ceiling
    assert sum(WAITS) < 2.0


class BusyFor:
    """A loop-lag source for the core (``Pacing.loop_lag``): a second late for the first
    ``searches`` searches, then on time; counts the searches."""

    def __init__(self, searches: int) -> None:
        self.searches, self.calls = searches, 0

    def __call__(self) -> float:
        self.calls += 1
        return 1.0 if self.calls <= self.searches else 0.0


@pytest.mark.parametrize("transport", ["custom", "protobuf-tcp", "websocket"])
def test_a_search_shed_by_a_real_server_is_retried_over_every_framed_transport(
    transport: str,
) -> None:
    """Behind custom (version 4), protobuf-tcp and WebSocket (2.2) the core's refusal now
    arrives as Overloaded (before: LimitExceeded with the sentence), so the gateway's patience
    applies to it as it does behind gRPC: a search shed twice is answered on the third try."""
    loop = LoopThread().start()
    lag = BusyFor(0)
    entry = registry.get(transport)

    async def start() -> tuple[ChatService, Any]:
        service = ChatService(
            SqliteStore(":memory:"), hash_cost=HashCost.LOW, pacing=Pacing(loop_lag=lag)
        )
        await service.store.open()
        return service, await entry.start_server(service, "127.0.0.1", 0)

    service, server = loop.run(start(), 10.0)
    gateway = Gateway(lambda: entry.open_client(server.address), loop).start()
    try:
        chat, _ = gateway.signup("eve", PASSWORD)
        lag.searches = lag.calls + 2  # the next two searches are shed
        page = gateway.list_accounts(chat, "ev*")
        assert (page.usernames, lag.calls - (lag.searches - 2)) == (("eve",), 3)
    finally:
        gateway.close()
        loop.run(server.close(), 10.0)
        loop.run(service.store.close(), 10.0)
        loop.stop()
