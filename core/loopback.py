"""The zero-wire transport: a ChatClient that calls ChatService in the same process.

It is the bench's baseline (what the chat logic costs with no bytes at all) and the fastest way
to run the conformance suite against the core. It follows the same session rules as the wire
transports: a failed login ends the session, and the client must be reconnected.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeVar

from core.client import ChatClient
from core.service import ChatService
from core.session import Session
from core.types import AccountPage, LoginResult, SendResult

T = TypeVar("T")


class LoopbackServer:
    """What ``start_server`` returns for loopback: the address *is* the service."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.address = service

    async def close(self) -> None:
        await self.service.shutdown()


async def start_server(service: ChatService, host: str = "", port: int = 0) -> LoopbackServer:
    return LoopbackServer(service)


def open_client(address: ChatService, *, auto_ack: bool = True) -> LoopbackClient:
    return LoopbackClient(address, auto_ack=auto_ack)


class LoopbackClient(ChatClient):
    def __init__(self, service: ChatService, *, auto_ack: bool = True) -> None:
        super().__init__(auto_ack=auto_ack)
        self._service = service
        self._session: Session | None = None
        self._pump: asyncio.Task[None] | None = None

    @property
    def session(self) -> Session:
        if self._session is None:
            raise ConnectionError("not connected")
        return self._session

    async def connect(self) -> None:
        self._session = self._service.open_session()

    async def close(self) -> None:
        if self._session is None:
            return
        self._service.close_session(self._session)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        self._session = None
        self._on_closed()

    async def signup(self, username: str, password: str) -> LoginResult:
        return self._started(await self._call(self._service.signup, username, password))

    async def login(self, username: str, password: str) -> LoginResult:
        return self._started(await self._call(self._service.login, username, password))

    async def logout(self) -> None:
        await self._call(self._service.logout)

    async def list_accounts(
        self, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        return await self._call(self._service.list_accounts, pattern, after, limit)

    async def send(self, recipients: Sequence[str], body: str) -> SendResult:
        return await self._call(self._service.send, recipients, body)

    async def ack(self, message_ids: Sequence[int]) -> None:
        await self._call(self._service.ack, message_ids)

    async def delete_account(self, username: str) -> None:
        await self._call(self._service.delete_account, username)

    async def _call(self, method: Callable[..., Awaitable[T]], *args: object) -> T:
        session = self.session
        try:
            return await method(session, *args)
        finally:
            if session.closed:
                self._on_closed(self._service_reason(session))

    @staticmethod
    def _service_reason(session: Session) -> str | None:
        return session.close_reason.value if session.close_reason else None

    def _started(self, result: LoginResult) -> LoginResult:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump(), name="loopback-pump")
        return result

    async def _run_pump(self) -> None:
        """Drain one login's deliveries; a new login starts a new pump."""
        session = self.session
        async for delivery in session.deliveries():
            self._on_delivery(delivery)
        if session.closed:
            self._on_closed(self._service_reason(session))
