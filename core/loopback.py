"""The zero-wire transport: a ClientTransport that calls ChatService in the same process.

It is the bench's baseline (what the chat logic costs with no bytes at all) and the fastest way
to run the conformance suite against the core. ``ChatClient`` applies the same client rules on
top of it as on every wire transport.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any, TypeVar

from core import requests as rq
from core.client import ChatClient, ClientEvents
from core.service import ChatService
from core.session import Session
from core.types import Delivery

R = TypeVar("R")


class LoopbackServer:
    """What ``start_server`` returns for loopback: the address *is* the service."""

    def __init__(self, service: ChatService) -> None:
        self.service = service
        self.address = service

    async def close(self) -> None:
        await self.service.shutdown()


async def start_server(
    service: ChatService, host: str = "", port: int = 0, *, guard: object = None, tls: object = None
) -> LoopbackServer:
    """The in-process "server": nothing listens, so ``guard`` has nothing to bound and
    ``tls`` nothing to encrypt."""
    return LoopbackServer(service)


def open_client(address: ChatService, *, auto_ack: bool = True, tls: object = None) -> ChatClient:
    """A client calling ``address`` (the service) in-process; ``tls`` is ignored."""
    return ChatClient(LoopbackTransport(address), auto_ack=auto_ack)


class LoopbackTransport:
    """Each request is a direct call of the service method on this client's session."""

    def __init__(self, service: ChatService) -> None:
        self._service = service
        self._session: Session | None = None
        self._events: ClientEvents | None = None
        self._pump: asyncio.Task[None] | None = None

    async def connect(self, events: ClientEvents) -> None:
        self._events = events
        self._session = self._service.open_session()

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is None:
            return
        self._service.close_session(session)
        if self._pump is not None:
            self._pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._pump
        if self._events is not None:
            self._events.connection_lost(None)

    async def request(self, request: rq.Request[R]) -> R:
        session = self._session
        if session is None:
            raise ConnectionError("not connected")
        service = self._service
        result: Any
        try:
            match request:
                case rq.Signup(username, password):
                    result = await service.signup(session, username, password)
                    self._start_pump(session)
                case rq.Login(username, password):
                    result = await service.login(session, username, password)
                    self._start_pump(session)
                case rq.Resume(token):
                    result = await service.resume(session, token)
                    self._start_pump(session)
                case rq.Logout():
                    await service.logout(session)
                    result = None
                case rq.ChangePassword(old_password, new_password, end_others):
                    result = await service.change_password(
                        session, old_password, new_password, end_others
                    )
                case rq.ListAccounts(pattern, after, limit):
                    result = await service.list_accounts(session, pattern, after, limit)
                case rq.Send(recipients, body):
                    result = await service.send(session, recipients, body)
                case rq.Ack(ids):
                    await service.ack(session, ids)
                    result = None
                case rq.DeleteAccount(username, password):
                    await service.delete_account(session, username, password)
                    result = None
                case rq.ListConversations(before_id, limit):
                    result = await service.list_conversations(session, before_id, limit)
                case rq.ReadHistory(participants, before_id, limit, conversation_id):
                    result = await service.read_history(
                        session, participants, before_id, limit, conversation_id
                    )
                case rq.MarkRead(conversation_id, up_to_id):
                    result = await service.mark_read(session, conversation_id, up_to_id)
                case rq.DeleteMessages(ids, for_everyone):
                    await service.delete_messages(session, ids, for_everyone)
                    result = None
                case _:
                    raise TypeError(f"loopback cannot carry {request!r}")
        finally:
            self._follow(session)
        return result  # (Any: each arm produces the R its request names)

    def _follow(self, session: Session) -> None:
        """Report a session the service ended during (or before) this call."""
        if session.closed and self._events is not None and session.close_reason is not None:
            self._events.session_ended(session.close_reason.value)

    def _start_pump(self, session: Session) -> None:
        if self._pump is None or self._pump.done():
            self._pump = asyncio.create_task(self._run_pump(session), name="loopback-pump")

    async def _run_pump(self, session: Session) -> None:
        """Drain one login's deliveries and notices; a new login starts a new pump."""
        assert self._events is not None
        async for event in session.events():
            if isinstance(event, Delivery):
                self._events.delivered(event)
            else:
                self._events.notified(event)
        self._follow(session)


__all__ = ["LoopbackServer", "LoopbackTransport", "open_client", "start_server"]
