"""The one client API every transport implements (custom, grpc, the in-process loopback).

The console, the web gateway, the bench and the conformance suite use only this interface,
so they run unchanged over any transport.

Incoming messages: ``messages()`` yields each :class:`Delivery` once (duplicate ids are dropped,
Rule 11) and acknowledges it to the server as it hands it over, unless the client was built
with ``auto_ack=False``, in which case the application calls :meth:`ack` itself.
"""

from __future__ import annotations

import abc
import asyncio
from collections import OrderedDict
from collections.abc import AsyncIterator, Sequence
from types import TracebackType

from core.errors import ChatError
from core.types import AccountPage, Delivery, LoginResult, SendResult

#: How many recent message ids a client remembers to drop duplicates (Rule 11). Duplicates
#: only arise when a message is re-sent after a reconnect, so a few thousand is plenty.
DEDUP_WINDOW = 4096


class ChatClient(abc.ABC):
    """Async chat client. Use ``async with`` or call connect()/close()."""

    def __init__(self, *, auto_ack: bool = True) -> None:
        self.auto_ack = auto_ack
        self._incoming: asyncio.Queue[Delivery | None] = asyncio.Queue()
        self._seen: OrderedDict[int, None] = OrderedDict()
        self.closed_reason: str | None = None  # set when the server ended the session

    # -- lifecycle -------------------------------------------------------------------------
    @abc.abstractmethod
    async def connect(self) -> None:
        """Open the connection (and do any handshake). Raises OSError if unreachable."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Close the connection; idempotent. Ends the messages() iterator."""

    async def __aenter__(self) -> ChatClient:
        await self.connect()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    # -- commands (each raises a core.errors.ChatError subclass on a domain error) ----------
    @abc.abstractmethod
    async def signup(self, username: str, password: str) -> LoginResult: ...

    @abc.abstractmethod
    async def login(self, username: str, password: str) -> LoginResult: ...

    @abc.abstractmethod
    async def logout(self) -> None: ...

    @abc.abstractmethod
    async def list_accounts(
        self, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        """Accounts matching the glob, sorted, names strictly after ``after``; limit 0 = default."""

    @abc.abstractmethod
    async def send(self, recipients: Sequence[str], body: str) -> SendResult: ...

    @abc.abstractmethod
    async def ack(self, message_ids: Sequence[int]) -> None:
        """Tell the server these messages reached the application (Rule 11)."""

    @abc.abstractmethod
    async def delete_account(self, username: str) -> None:
        """Delete the logged-in account; ``username`` must be its own name (Rule 14)."""

    # -- incoming --------------------------------------------------------------------------
    async def messages(self) -> AsyncIterator[Delivery]:
        """Yield incoming messages until the connection closes."""
        while True:
            item = await self._incoming.get()
            if item is None:
                self._incoming.put_nowait(None)  # keep the end marker for other readers
                return
            if self.auto_ack:
                try:
                    await self.ack((item.message_id,))
                except (ChatError, ConnectionError):
                    pass  # the session ended meanwhile: the message stays pending, still show it
            yield item

    async def next_message(self, timeout: float) -> Delivery:
        """The next incoming message, or TimeoutError; a convenience for tests and tools."""
        async with asyncio.timeout(timeout):
            async for message in self.messages():
                return message
        raise ConnectionError(f"connection closed: {self.closed_reason or 'no reason given'}")

    # -- for implementations ---------------------------------------------------------------
    def _on_delivery(self, delivery: Delivery) -> None:
        """Called by the transport for each pushed message; drops duplicates."""
        if delivery.message_id in self._seen:
            return
        self._seen[delivery.message_id] = None
        if len(self._seen) > DEDUP_WINDOW:
            self._seen.popitem(last=False)
        self._incoming.put_nowait(delivery)

    def _on_closed(self, reason: str | None = None) -> None:
        """Called by the transport when the connection or session ends."""
        if reason and self.closed_reason is None:
            self.closed_reason = reason
        self._incoming.put_nowait(None)


__all__ = ["DEDUP_WINDOW", "ChatClient"]
