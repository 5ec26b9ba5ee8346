"""Fixtures of the web UI tests: a real Chromium, a real gateway process, a real chat server.

``gateway`` runs the web gateway as a child process, one per transport (parametrised over the
registry's wire transports that carry history: the pages read it from the server), against
the session's ``wire_server``. For development before the
wire transports exist, ``WIRECHAT_WEB_TRANSPORTS=loopback`` runs the gateway with its
in-process chat server instead.

``local_gateway`` is the gateway object itself over an in-process (loopback) chat service, for
the fast tests that need no browser; ``@pytest.mark.limits(...)`` sets its Limits.
"""

from __future__ import annotations

from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

import pytest
from playwright.sync_api import Browser, sync_playwright

from core import ChatClient, ChatService, HashCost, SqliteStore, loopback
from core.throttle import LoginThrottle
from tests.web.helpers import CHROMIUM, CHROMIUM_ARGS, GatewayProcess, Web, web_transports
from ui.web.gateway import Gateway, Limits
from ui.web.loop import LoopThread

T = TypeVar("T")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "limits(**kwargs): Limits of the local_gateway fixture")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    # Module scope, not session: Playwright's sync API keeps an event loop running on this
    # thread while it is open, and pytest-asyncio cannot run async tests until it stops.
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is not installed: run `make browser` (apt-get install chromium)")
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield chromium
        finally:
            chromium.close()


@pytest.fixture(scope="module", params=web_transports())
def gateway(request: pytest.FixtureRequest) -> Iterator[GatewayProcess]:
    transport: str = request.param
    address = None
    if transport != "loopback":
        address = request.getfixturevalue("wire_server").addresses[transport]
    process = GatewayProcess(transport, address).start()
    try:
        yield process
    finally:
        process.stop()


@pytest.fixture
def web(browser: Browser, gateway: GatewayProcess) -> Iterator[Web]:
    helper = Web(browser, gateway)
    try:
        yield helper
    finally:
        helper.close()


class FakeClock:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class LocalGateway:
    """A Gateway over an in-process chat service (loopback), for tests without a browser."""

    gateway: Gateway
    service: ChatService
    loop: LoopThread
    clock: FakeClock

    def client(self) -> ChatClient:
        """A loopback client on the same service, used from the test through ``run``."""
        return loopback.open_client(self.service)

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 10.0) -> T:
        return self.loop.run(coro, timeout)


@pytest.fixture
def local_gateway(request: pytest.FixtureRequest) -> Iterator[LocalGateway]:
    marker = request.node.get_closest_marker("limits")
    limits = Limits(**marker.kwargs) if marker else Limits()
    loop = LoopThread().start()

    async def make_service() -> ChatService:
        throttle = LoginThrottle(base=0.05, cap=0.4)
        return ChatService(SqliteStore(":memory:"), hash_cost=HashCost.LOW, throttle=throttle)

    service = loop.run(make_service(), 10.0)
    clock = FakeClock()
    gateway = Gateway(lambda: loopback.open_client(service), loop, limits, clock=clock).start()
    try:
        yield LocalGateway(gateway, service, loop, clock)
    finally:
        gateway.close()
        loop.run(service.shutdown(), 10.0)
        loop.stop()
