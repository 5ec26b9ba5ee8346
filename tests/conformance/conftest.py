"""The conformance suite runs every test against every transport in the registry.

``chat`` opens clients of the transport under test: in-process for ``loopback`` (a fresh
ChatService per test), through the session's real server process for the wire transports
(over TLS under ``WIRECHAT_TEST_TLS=1``: ``test_tls`` in tests/conftest.py; a test that starts
its own server passes ``test_tls`` on to it and to its ``Chat``).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
import pytest_asyncio

from core import ChatClient, ChatService, HashCost, SqliteStore
from core.throttle import LoginThrottle
from tests.conftest import TlsFiles
from transports import registry
from wirechat.launch import ServerProcess


class Chat:
    """Opens connected clients of one transport and closes them all at the end."""

    def __init__(self, transport: str, address: Any, tls: TlsFiles | None = None) -> None:
        self.transport = transport
        self.address = address
        self.tls = tls.client if tls is not None and transport != "loopback" else None
        self._clients: list[ChatClient] = []

    async def client(self, *, auto_ack: bool = True) -> ChatClient:
        client = registry.get(self.transport).open_client(
            self.address, auto_ack=auto_ack, tls=self.tls
        )
        await client.connect()
        self._clients.append(client)
        return client

    async def user(self, name: str, password: str = "pw-secret-123", **kw: Any) -> ChatClient:
        """A client signed up as ``name``."""
        client = await self.client(**kw)
        await client.signup(name, password)
        return client

    async def login(self, name: str, password: str = "pw-secret-123", **kw: Any) -> ChatClient:
        client = await self.client(**kw)
        await client.login(name, password)
        return client

    async def aclose(self) -> None:
        for client in self._clients:
            with contextlib.suppress(Exception):
                await client.close()


def make_loopback_service(**kw: Any) -> ChatService:
    return ChatService(
        SqliteStore(":memory:"),
        hash_cost=HashCost.LOW,
        throttle=LoginThrottle(base=0.05, cap=0.4),
        **kw,
    )


@pytest.fixture(params=list(registry.TRANSPORTS))
def transport(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest_asyncio.fixture
async def chat(transport: str, request: pytest.FixtureRequest) -> AsyncIterator[Chat]:
    if transport == "loopback":
        service = make_loopback_service()
        address: Any = service
    else:
        server: ServerProcess = request.getfixturevalue("wire_server")
        address = server.addresses[transport]
    chats = Chat(transport, address, request.getfixturevalue("test_tls"))
    try:
        yield chats
    finally:
        await chats.aclose()


OpenChat = Callable[[str], Chat]
