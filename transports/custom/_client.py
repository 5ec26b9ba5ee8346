"""The asyncio ChatClient of the custom protocol: a thin driver around the codec.

Theory of operation (section numbers refer to PROTOCOL.md)
  * The connection is an ``asyncio.Protocol`` (``_Wire``); there is no reader task.
    ``data_received`` feeds the codec and dispatches every event at once: a response resolves
    the future of its request id; DELIVERs go to ``_on_delivery``; an ERROR on request id 0 is
    either a failed ACK (request-level code) or the end of the session or connection.
  * Requests can be pipelined: each takes the lowest free request id (so ids stay one byte,
    section 8) and keeps it until its response arrives, even if the caller gave up waiting.
    ACK has no success reply and always travels on id 0, so acks are fire-and-forget.
  * Writing: a request made while nothing else is in flight is written at once (the common
    one-at-a-time case costs one system call and no trip around the loop). Requests made
    while others are in flight, and ACKs, are collected and written once at the end of the
    loop iteration, so a burst of pipelined calls costs one system call. Past the transport's
    high-water mark (``pause_writing``) callers wait until the server reads.
  * Session effects are applied as responses arrive, in wire order, not by the waiting
    caller: LOGGED_IN/SIGNED_UP log in, LOGGED_OUT logs out, DELETED or an error reply to
    SIGNUP/LOGIN ends the session (section 9). After the session ended, new calls raise
    SessionClosed as on every transport; after the connection is gone, ConnectionError.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from collections.abc import Sequence
from typing import Any, cast

from core.client import ChatClient
from core.errors import InvalidArgument, LimitExceeded, NotLoggedIn, SessionClosed
from core.types import AccountPage, CloseReason, Delivery, LoginResult, SendResult
from transports.custom._codec import Connection, Role
from transports.custom._errors import describe, error_for_code, reason_for_code
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    DeleteAccount,
    Deleted,
    Deliver,
    Error,
    Hello,
    ListAccounts,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    Ping,
    Pong,
    Send,
    Sent,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._wire import (
    MAX_ACK_IDS,
    MAX_RECIPIENTS,
    U32_MAX,
    U64_MAX,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
    closes,
)

log = logging.getLogger(__name__)

#: Requests made while others are in flight are collected and written once per loop iteration
#: (pipelined calls then cost one system call), or at once when this many bytes are waiting.
FLUSH_AT = 64 * 1024
CONNECT_TIMEOUT = 10.0  # TCP connect plus HELLO/WELCOME

#: The response each request expects (besides ERROR).
_REPLY_TO: dict[type, type] = {
    Signup: SignedUp,
    Login: LoggedIn,
    Logout: LoggedOut,
    ListAccounts: Accounts,
    Send: Sent,
    DeleteAccount: Deleted,
    Ping: Pong,
}


def open_client(address: tuple[str, int], *, auto_ack: bool = True) -> CustomClient:
    """A ChatClient for a custom-protocol server at (host, port); call connect() or use
    ``async with``."""
    return CustomClient(address, auto_ack=auto_ack)


class _Wire(asyncio.Protocol):
    """The asyncio side of a CustomClient: hands what the transport reports to the client."""

    def __init__(self, client: CustomClient) -> None:
        self._client = client

    def data_received(self, data: bytes) -> None:
        self._client._data_received(data)

    def pause_writing(self) -> None:
        self._client._paused = True

    def resume_writing(self) -> None:
        self._client._resume_writing()

    def eof_received(self) -> bool:
        self._client._connection_lost(CloseReason.DISCONNECTED.value)
        return False  # the transport closes

    def connection_lost(self, exc: Exception | None) -> None:
        client = self._client
        if exc is None:
            client._connection_lost(CloseReason.DISCONNECTED.value)
        else:
            client._connection_lost(f"the connection broke: {exc}")
        client._resume_writing()
        if client._gone is not None and not client._gone.done():
            client._gone.set_result(None)


class CustomClient(ChatClient):
    def __init__(self, address: tuple[str, int], *, auto_ack: bool = True) -> None:
        super().__init__(auto_ack=auto_ack)
        self.address = address
        self.welcome: Welcome | None = None
        self._codec = Connection(Role.CLIENT)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._transport: asyncio.Transport | None = None
        self._gone: asyncio.Future[None] | None = None  # set when the transport is closed
        self._welcome_waiter: asyncio.Future[Welcome] | None = None
        self._pending: dict[int, tuple[asyncio.Future[Any], type]] = {}
        self._free_ids: list[int] = []  # a heap of released ids below _next_id
        self._next_id = 1
        self._logged_in = False
        self._session_end: str | None = None  # why the session ended (new calls: SessionClosed)
        self._lost: str | None = None  # why the connection is gone (new calls: ConnectionError)
        self._signalled = False
        self._out: list[bytes] = []  # frames not yet handed to the transport
        self._out_size = 0
        self._paused = False  # the server is not reading what we write
        self._resumed: list[asyncio.Future[None]] = []  # callers waiting for resume_writing
        self._closed_by_us = False

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        if self._transport is not None:
            raise RuntimeError("connect() was already called; open a new client to reconnect")
        host, port = self.address
        self._loop = loop = asyncio.get_running_loop()
        self._gone = loop.create_future()
        async with asyncio.timeout(CONNECT_TIMEOUT):
            transport, _ = await loop.create_connection(lambda: _Wire(self), host, port)
            # uvloop's transports implement asyncio.Transport without subclassing it.
            self._transport = cast(asyncio.Transport, transport)
            self._welcome_waiter = loop.create_future()
            self._transport.write(self._codec.send(Hello()))
            try:
                self.welcome = await self._welcome_waiter
            except BaseException:
                await self.close()
                raise

    async def close(self) -> None:
        self._closed_by_us = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            self._flush()  # e.g. the ACKs of the last messages
            transport.close()
            if self._gone is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(self._gone)
        self._connection_lost("closed by the client")

    # -- commands ----------------------------------------------------------------------------
    async def signup(self, username: str, password: str) -> LoginResult:
        reply = await self._request(Signup, username, password)
        return LoginResult(username, reply.pending)

    async def login(self, username: str, password: str) -> LoginResult:
        reply = await self._request(Login, username, password)
        return LoginResult(username, reply.pending)

    async def logout(self) -> None:
        await self._request(Logout)

    async def list_accounts(
        self, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        if limit < 0:
            self._require_session()
            raise InvalidArgument("the page size must not be negative")
        limit = min(limit, U32_MAX)  # the server caps it far lower anyway
        reply = await self._request(ListAccounts, pattern, after, limit)
        return AccountPage(reply.usernames, reply.more)

    async def send(self, recipients: Sequence[str], body: str) -> SendResult:
        names = tuple(recipients)
        if not names:
            self._require_session()
            raise InvalidArgument("name at least one recipient")
        if len(names) > MAX_RECIPIENTS:
            self._require_session()
            raise LimitExceeded(
                f"at most {MAX_RECIPIENTS} recipients per message (got {len(names)})"
            )
        reply = await self._request(Send, names, body)
        return SendResult(reply.message_id, reply.sent_at_ms, reply.unknown_recipients)

    async def ack(self, message_ids: Sequence[int]) -> None:
        """Fire-and-forget (section 6.7): the server answers an ACK only if it fails."""
        self._require_session()
        if len(message_ids) > MAX_ACK_IDS:
            raise LimitExceeded(f"at most {MAX_ACK_IDS} ids per ack")
        ids = tuple(sorted({i for i in message_ids if 0 <= i <= U64_MAX}))
        if ids:
            self._write(self._codec.send(Ack(ids)))
            if self._paused:
                await self._drain()

    async def delete_account(self, username: str) -> None:
        await self._request(DeleteAccount, username)

    async def ping(self, payload: bytes = b"") -> bytes:
        """Round trip PING/PONG (works before login too); returns the echoed payload."""
        reply = await self._request(Ping, payload)
        return reply.payload

    # -- requests ----------------------------------------------------------------------------
    async def _request(self, request: type, *fields: Any) -> Any:
        """Send ``request(request_id, *fields)`` and wait for its response."""
        self._require_connection()
        rid = self._allocate_id()
        event = request(rid, *fields)
        try:
            data = self._codec.send(event)
        except LocalProtocolError as exc:
            self._release_id(rid)
            raise self._local_error(exc) from None
        assert self._loop is not None and self._transport is not None
        future: asyncio.Future[Any] = self._loop.create_future()
        if self._pending or self._out:
            self._write(data)  # others are in flight: join their batch
        elif not self._transport.is_closing():
            self._transport.write(data)
        self._pending[rid] = (future, request)
        if self._paused:
            try:
                await self._drain()
            except BaseException:  # cancelled: the request is sent, its answer is not wanted
                future.cancel()
                raise
        reply = await future
        if isinstance(reply, Error):
            raise error_for_code(reply.code, reply.message)
        return reply

    def _local_error(self, exc: LocalProtocolError) -> Exception:
        """What the server would have said about a request we cannot even encode."""
        if exc.code is ErrorCode.FRAME_TOO_LARGE:
            return LimitExceeded(f"the message does not fit in one frame: {exc}")
        return InvalidArgument(str(exc))

    def _allocate_id(self) -> int:
        if self._free_ids:
            return heapq.heappop(self._free_ids)
        rid = self._next_id
        if rid > U32_MAX:
            raise RuntimeError("2^32-1 requests in flight")
        self._next_id += 1
        return rid

    def _release_id(self, rid: int) -> None:
        heapq.heappush(self._free_ids, rid)

    def _require_connection(self) -> None:
        if self._session_end is not None:
            raise SessionClosed(f"session ended: {self._session_end}")
        if self._transport is None or self._lost is not None:
            raise ConnectionError(f"not connected: {self._lost or 'call connect() first'}")

    def _require_session(self) -> None:
        """The check the service makes first, for the calls we answer without the server."""
        self._require_connection()
        if not self._logged_in:
            raise NotLoggedIn()

    def _write(self, data: bytes) -> None:
        """Queue a frame; the queue is written at the end of this loop iteration."""
        if not self._out:
            assert self._loop is not None
            self._loop.call_soon(self._flush)
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        out = self._out
        if not out:
            return
        transport = self._transport
        if transport is not None and not transport.is_closing():
            transport.writelines(out)
        out.clear()
        self._out_size = 0

    async def _drain(self) -> None:
        """Backpressure: wait while the server is not reading what we wrote."""
        self._flush()
        while self._paused and self._lost is None:
            assert self._loop is not None
            waiter = self._loop.create_future()
            self._resumed.append(waiter)
            await waiter

    def _resume_writing(self) -> None:
        self._paused = False
        waiters, self._resumed = self._resumed, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    # -- incoming ----------------------------------------------------------------------------
    def _data_received(self, data: bytes) -> None:
        codec = self._codec
        try:
            codec.receive_data(data)
            while (event := codec.next_event()) is not NEED_DATA:
                self._dispatch(event)
        except ProtocolError as exc:
            log.warning("the server broke the protocol: %r", exc)
            self._connection_lost(f"the server broke the protocol: {exc}")
        except Exception as exc:  # a bug of ours: never let it reach the loop
            log.exception("reading from the server failed")
            self._connection_lost(f"the client failed: {exc!r}")

    def _dispatch(self, event: Any) -> None:
        if isinstance(event, Deliver):
            delivery = Delivery(event.message_id, event.sender, event.body, event.sent_at_ms)
            self._on_delivery(delivery)
        elif isinstance(event, Error) and event.request_id == 0:
            self._notice(event)
        elif isinstance(event, Welcome):
            if self._welcome_waiter is not None and not self._welcome_waiter.done():
                self._welcome_waiter.set_result(event)
        else:
            self._response(event)

    def _response(self, event: Any) -> None:
        entry = self._pending.pop(event.request_id, None)
        if entry is None:
            raise ProtocolError(ErrorCode.MALFORMED, f"a reply to no request: {event!r}")
        future, request = entry
        if not isinstance(event, Error | _REPLY_TO[request]):
            raise ProtocolError(ErrorCode.MALFORMED, f"{event!r} answers a {request.__name__}")
        self._release_id(event.request_id)
        if isinstance(event, SignedUp | LoggedIn):
            self._logged_in = True
        elif isinstance(event, LoggedOut):
            self._logged_in = False
        elif isinstance(event, Deleted):
            self._session_over(CloseReason.ACCOUNT_DELETED.value)
        elif (
            isinstance(event, Error)
            and request in (Signup, Login)
            and event.code != ErrorCode.ALREADY_LOGGED_IN
        ):
            self._session_over(CloseReason.AUTH_FAILED.value)
        if not future.done():
            future.set_result(event)

    def _notice(self, error: Error) -> None:
        """An ERROR on request id 0 (section 7.10)."""
        if not closes(error.code):
            log.warning("the server refused an ACK: %s: %s", describe(error.code), error.message)
            return
        reason = reason_for_code(error.code)
        if reason is not None:
            self._session_over(reason.value)
        else:
            self._lost = f"{describe(error.code)}: {error.message}"
        if self._welcome_waiter is not None and not self._welcome_waiter.done():
            self._welcome_waiter.set_exception(error_for_code(error.code, error.message))

    def _session_over(self, reason: str) -> None:
        self._logged_in = False
        if self._session_end is None:
            self._session_end = reason
        self._signal_closed(reason)

    def _connection_lost(self, reason: str) -> None:
        if self._lost is None:
            self._lost = reason
        self._logged_in = False
        error = ConnectionError(f"connection closed: {self._session_end or self._lost}")
        pending, self._pending = self._pending, {}
        for future, _ in pending.values():
            if not future.done():
                future.set_exception(error)
        if self._welcome_waiter is not None and not self._welcome_waiter.done():
            self._welcome_waiter.set_exception(error)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        self._signal_closed(None if self._closed_by_us else self._session_end or self._lost)

    def _signal_closed(self, reason: str | None) -> None:
        if not self._signalled:
            self._signalled = True
            self._on_closed(reason)


__all__ = ["CustomClient", "open_client"]
