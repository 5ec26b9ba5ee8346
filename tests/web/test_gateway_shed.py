"""A command the chat server shed as overloaded (nothing was done) is retried by the web
gateway a few times before a person sees the server's sentence (ui.web.patience); other
refusals reach the page at once. CI once failed a browser test on one shed signup."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import pytest

from core import AuthFailed
from core.errors import Overloaded
from ui.web.gateway import GatewayError
from ui.web.patience import WAITS, retry_shed

if TYPE_CHECKING:
    from tests.web.conftest import LocalGateway

PASSWORD = "pw-secret-1"
BUSY = "the server is overloaded (requests wait 361 ms); nothing was done: try again in a moment"


def shed_first(
    method: Callable[..., Awaitable[Any]], times: int
) -> tuple[Callable[..., Awaitable[Any]], list[int]]:
    """``method`` refusing its first ``times`` calls as overloaded; the list counts calls."""
    calls = [0]

    async def flaky(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] <= times:
            raise Overloaded(BUSY)
        return await method(*args, **kwargs)

    return flaky, calls


def test_a_signup_shed_twice_still_signs_in(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = local_gateway.service
    flaky, calls = shed_first(service.signup, 2)
    monkeypatch.setattr(service, "signup", flaky)
    _, result = local_gateway.gateway.signup("ann", PASSWORD)
    assert (result.username, calls[0]) == ("ann", 3)
    assert service.live_sessions("ann") == 1  # the refused tries left no session behind
    assert local_gateway.gateway.live_sessions == 1


def test_a_server_that_stays_busy_gets_its_sentence_shown(
    local_gateway: LocalGateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    service = local_gateway.service
    flaky, calls = shed_first(service.signup, 100)
    monkeypatch.setattr(service, "signup", flaky)
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
    flaky, calls = shed_first(service.send, 1)
    monkeypatch.setattr(service, "send", flaky)
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
    counted, calls = shed_first(service.login, 0)  # counts, sheds none
    monkeypatch.setattr(service, "login", counted)
    with pytest.raises(AuthFailed):
        gateway.login("cy", "wrong")
    assert calls[0] == 1

    chat, _ = gateway.signup("dee", PASSWORD)
    counted_send, sends = shed_first(service.send, 0)
    monkeypatch.setattr(service, "send", counted_send)
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
