"""The client side of the custom protocol: a ``core.client.ClientTransport`` around the codec.

``ChatClient`` (in ``core``) holds every client rule: login state, the NotLoggedIn and
SessionClosed checks, what a failed login or DELETED does. This driver only carries requests.

Theory of operation (section numbers refer to PROTOCOL.md)
  * ``CustomTransport`` is the connection's ``asyncio.Protocol``; there is no reader task and
    no task per request. ``data_received`` feeds the codec and dispatches every event at once:
    a response resolves the future of its request id with the request's result (or its
    error); a DELIVER goes to ``events.delivered``, and on a version 2 connection SENT_COPY,
    READ_MARK and MESSAGES_GONE go to ``events.notified``; an ERROR on request id 0 is a failed ACK
    (request-level code, logged) or the end of the session or connection (section 7.10).
  * ``_REQUESTS`` is the one table from a ``core.requests`` type to its request event, the
    response that answers it, and the result that response makes. ERROR codes become core
    errors in ``_errors``.
  * Requests can be pipelined: each takes the lowest free request id (so ids stay one byte,
    section 8) and keeps it until its response arrives, even if the caller gave up waiting.
    ACK has no success reply and always travels on id 0, so acks are fire-and-forget.
  * Writing goes through an ``Outbox``: a request made while nothing else is in flight is
    written at once (one system call, no trip around the loop; straight to the transport
    when no ACK waits in the outbox, which ``_Outbox.idle`` says); requests made while others
    are in flight, and ACKs, leave together at the end of the loop iteration. Past the byte
    budget callers wait until the server reads. The request's future is made after the
    write, off the path to the server.
  * A read that ends with a reply returns as soon as the reply is handed over (the codec's
    ``buffered`` is 0), without asking the codec for a next event it does not have: the
    caller wakes once ``data_received`` returns, so that is all on its latency (issue 8).
  * The hot values (the SEND event, each SendResult, each pushed Delivery) are frozen
    dataclasses built through ``core.frozen.builder``: same values, a third of the cost of their
    generated ``__init__``, straight from the request or event in one call (issue 8: the
    client must not be the bottleneck of the bench; its CPU per send is measured against
    ``bench/refs/lean_custom.py``'s).
  * The codec is pluggable (``codec=``): any ``Codec`` yielding the events of ``_events`` in
    the same frames, e.g. ``transports.protobuf_tcp``'s. From ``_wire`` the driver takes only
    what every codec on these frames shares: the error codes and U32_MAX (request ids and
    page sizes are u32 fields in every body encoding).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from asyncio import InvalidStateError
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from heapq import heappop, heappush
from typing import Any, ClassVar, TypeVar, cast

from core import requests as rq
from core import types as ct
from core.client import ChatClient, ClientEvents
from core.frozen import builder
from core.types import (
    AccountPage,
    CloseReason,
    ConversationPage,
    Delivery,
    HistoryPage,
    LoginResult,
    SendResult,
)
from transports import _wrong_port
from transports._outbox import Outbox
from transports._tls import ClientTls, describe_failure, hostname_for, not_tls
from transports.custom._codec import CodecFactory, Connection, Role
from transports.custom._errors import describe, error_for_code, error_for_local, reason_for_code
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    Conversations,
    DeleteAccount,
    Deleted,
    DeleteMessages,
    Deliver,
    Error,
    Hello,
    History,
    ListAccounts,
    ListConversations,
    LoggedIn,
    LoggedOut,
    Login,
    Logout,
    MarkedRead,
    MarkRead,
    MessagesGone,
    Ping,
    Pong,
    ReadHistory,
    ReadMark,
    Removed,
    Send,
    Sent,
    SentCopy,
    SignedUp,
    Signup,
    Welcome,
)
from transports.custom._security import ChangePassword, PasswordChanged, Resume
from transports.custom._wire import U32_MAX, ErrorCode, LocalProtocolError, ProtocolError, closes

log = logging.getLogger(__name__)

R = TypeVar("R")

CONNECT_TIMEOUT = 10.0  # TCP connect plus HELLO/WELCOME
#: Bytes of requests that may wait unread by the server before callers wait: asyncio's
#: default high-water mark, which is plenty for one user's requests.
CLIENT_BUDGET = 64 * 1024


@dataclass(frozen=True, slots=True)
class PingRequest(rq.Request[bytes]):
    """PING (section 6.9): a round trip that works before login too; a tool's extra."""

    payload: bytes = b""
    needs_session: ClassVar[bool] = False


# What is built once per send and per push, at a third of its __init__'s cost and in one
# call each (core.frozen): the SEND event of a request, the SendResult of a SENT reply, and the
# Delivery of a DELIVER push (also inside a SENT_COPY).
_send_event: Callable[[int, rq.Send], Send] = builder(
    Send, "rid, r", ("rid", "r.recipients", "r.body")
)
_send_result: Callable[[rq.Send, Sent], SendResult] = builder(
    SendResult,
    "r, e",
    ("e.message_id", "e.sent_at_ms", "e.unknown_recipients", "e.conversation_id"),
)
_delivery: Callable[[Deliver], Delivery] = builder(
    Delivery,
    "e",
    (
        "e.message_id",
        "e.sender",
        "e.body",
        "e.sent_at_ms",
        "e.participants",
        "e.sender_deleted",
        "e.conversation_id",
    ),
)

# The one translation between core requests and the wire: request type -> (the request event
# for a request id, the response that answers it, the result that response makes).
_Spec = tuple[Callable[[int, Any], Any], type, Callable[[Any, Any], Any]]
_REQUESTS: dict[type, _Spec] = {
    rq.Signup: (
        lambda rid, r: Signup(rid, r.username, r.password),
        SignedUp,
        lambda r, e: LoginResult(r.username, e.pending, e.resume_token),
    ),
    rq.Login: (
        lambda rid, r: Login(rid, r.username, r.password),
        LoggedIn,
        lambda r, e: LoginResult(r.username, e.pending, e.resume_token),
    ),
    rq.Logout: (lambda rid, r: Logout(rid), LoggedOut, lambda r, e: None),
    rq.ListAccounts: (
        # the wire carries a u32 page size; the server caps it far lower anyway
        lambda rid, r: ListAccounts(rid, r.pattern, r.after, min(r.limit, U32_MAX)),
        Accounts,
        lambda r, e: AccountPage(e.usernames, e.more),
    ),
    rq.Send: (_send_event, Sent, _send_result),
    rq.DeleteAccount: (
        lambda rid, r: DeleteAccount(rid, r.username, r.password),
        Deleted,
        lambda r, e: None,
    ),
    PingRequest: (lambda rid, r: Ping(rid, r.payload), Pong, lambda r, e: e.payload),
    # version 2 (a version 1 connection refuses these locally: see error_for_local)
    rq.ListConversations: (
        lambda rid, r: ListConversations(rid, r.before_id, min(r.limit, U32_MAX)),
        Conversations,
        lambda r, e: ConversationPage(e.conversations, e.more),
    ),
    rq.ReadHistory: (
        lambda rid, r: ReadHistory(
            rid, r.conversation_id, r.before_id, min(r.limit, U32_MAX), r.participants
        ),
        History,
        lambda r, e: HistoryPage(
            e.conversation_id,
            e.participants,
            e.messages,
            e.more,
            e.deleted_participants,
            e.read_up_to,
        ),
    ),
    rq.MarkRead: (
        lambda rid, r: MarkRead(rid, r.conversation_id, r.up_to_id),
        MarkedRead,
        lambda r, e: ct.ReadMarker(e.conversation_id, e.up_to_id, e.unread),
    ),
    rq.DeleteMessages: (
        lambda rid, r: DeleteMessages(rid, r.message_ids, r.for_everyone),
        Removed,
        lambda r, e: None,
    ),
    # version 3 (account security)
    rq.Resume: (
        lambda rid, r: Resume(rid, r.token),
        LoggedIn,
        lambda r, e: LoginResult(e.username, e.pending, e.resume_token),
    ),
    rq.ChangePassword: (
        lambda rid, r: ChangePassword(rid, r.old_password, r.new_password, r.end_other_sessions),
        PasswordChanged,
        lambda r, e: ct.PasswordChanged(e.resume_token, e.sessions_ended),
    ),
}


class _Outbox(Outbox):
    """The client's Outbox, which says at a glance whether a frame waits in it (``idle``), so
    that the lone request is handed to the transport as ``write_now`` would, without a call
    into the outbox (issue 8: that call was ~1,300 of a send's ~80,000 instructions). The
    client reads no ``batches``; its direct writes are not counted there."""

    __slots__ = ("idle",)

    def __init__(self, loop: asyncio.AbstractEventLoop, *, budget: int) -> None:
        super().__init__(loop, budget=budget)
        #: Nothing waits in the outbox: a frame written to the transport now keeps its order.
        self.idle = True

    def write(self, data: bytes) -> None:
        super().write(data)
        self.idle = not self._out

    def flush(self) -> None:
        super().flush()
        self.idle = not self._out

    def release(self) -> None:
        super().release()
        self.idle = not self._out


def open_client(
    address: tuple[str, int],
    *,
    auto_ack: bool = True,
    codec: CodecFactory = Connection,
    tls: ClientTls | None = None,
) -> ChatClient:
    """A ChatClient for a custom-protocol server at (host, port); call connect() or use
    ``async with``. ``client.transport`` is the :class:`CustomTransport` (WELCOME, ping).
    ``tls``: speak TLS, trusting what it names."""
    return ChatClient(CustomTransport(address, codec=codec, tls=tls), auto_ack=auto_ack)


class CustomTransport(asyncio.Protocol):
    """One connection to a custom-protocol server: connect, carry requests, report pushes."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        codec: CodecFactory = Connection,
        tls: ClientTls | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.welcome: Welcome | None = None  # what the server said in WELCOME
        self._codec = codec(Role.CLIENT)
        self._events: ClientEvents | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._outbox: _Outbox | None = None
        self._transport: asyncio.Transport | None = None
        self._gone: asyncio.Future[None] | None = None  # set when the socket is closed
        self._welcome_waiter: asyncio.Future[Welcome] | None = None
        # request id -> (its caller's future, the request, its _REQUESTS entry)
        self._pending: dict[int, tuple[asyncio.Future[Any], Any, _Spec]] = {}
        # Request ids: a heap of released ids below _next_id, valid while a request is in
        # flight; with none in flight every id is free and request() resets both.
        self._free_ids: list[int] = []
        self._next_id = 1
        self._why: str | None = None  # why the session or connection ended (first reason)
        self._ended = False  # the connection is gone (or going): no more requests
        self._closed_by_us = False

    # -- ClientTransport -----------------------------------------------------------------------
    async def connect(self, events: ClientEvents) -> None:
        """Connect and do the handshake (HELLO/WELCOME)."""
        if self._loop is not None:
            raise RuntimeError("connect() was already called; open a new client to reconnect")
        self._events = events
        self._loop = loop = asyncio.get_running_loop()
        self._outbox = _Outbox(loop, budget=CLIENT_BUDGET)
        self._gone = loop.create_future()
        host, port = self.address
        async with asyncio.timeout(CONNECT_TIMEOUT):
            await self._open(loop, host, port)
            self._welcome_waiter = loop.create_future()
            # offer every version the codec speaks (section 5); the server picks the highest
            versions = self._codec.versions
            hello = self._codec.send(Hello(versions[0], versions[-1]))
            self._outbox.write_now(hello)
            try:
                self.welcome = await self._welcome(self._welcome_waiter, hello)
            except BaseException:
                await self.close()
                raise

    async def _open(self, loop: asyncio.AbstractEventLoop, host: str, port: int) -> None:
        """The TCP connection (and the TLS handshake, with ``tls``), failures said plainly."""
        tls = self.tls
        if tls is None:
            await loop.create_connection(lambda: self, host, port)
            return
        try:
            await loop.create_connection(
                lambda: self, host, port, ssl=tls.context(), server_hostname=hostname_for(tls, host)
            )
        except (OSError, EOFError) as exc:
            told = describe_failure(exc, self.address)
            if told is None and not_tls(exc):
                found = await _wrong_port.probe(host, port, tls=tls)
                if _wrong_port.telling(found, None, tls=True):
                    told = _wrong_port.explain(self.address, "TLS", found, tls=True)
            if told is not None:
                raise _wrong_port.WrongPort(told) from exc
            raise

    async def _welcome(self, waiter: asyncio.Future[Welcome], hello: bytes) -> Welcome:
        """WELCOME; if the port turns out to speak another protocol (the handshake failed, or
        nothing answered for a while: an HTTP/1 server waits silently for a request line),
        WrongPort saying which (transports._wrong_port)."""
        # The codecs on these frames differ in HELLO's magic (section 5): "WC" or "WP".
        ours = "protobuf-tcp" if hello[3:5] == b"WP" else "custom"
        expected = "the protobuf-tcp protocol" if ours == "protobuf-tcp" else "the custom protocol"
        waiter.add_done_callback(_retrieved)  # also when WrongPort is raised in its stead
        try:
            async with asyncio.timeout(_wrong_port.SILENT_AFTER):
                return await asyncio.shield(waiter)
        except TimeoutError:
            # Probe while still waiting: a server that is only slow (its accept queue behind
            # a flood of connects) may answer meanwhile, and then its WELCOME goes on at once
            # instead of after the probe's few connections (issue 14: the owner's login).
            probing = asyncio.ensure_future(_wrong_port.probe(*self.address, tls=self.tls))
            try:
                await asyncio.wait((probing, waiter), return_when=asyncio.FIRST_COMPLETED)
            finally:
                probing.cancel()
            if waiter.done():
                return waiter.result()
            found = probing.result()
            tls = self.tls is not None
            if _wrong_port.telling(found, ours, tls=tls):
                message = _wrong_port.explain(self.address, expected, found, tls=tls)
                raise _wrong_port.WrongPort(message) from None
            return await waiter
        except Exception as exc:
            found = await _wrong_port.probe(*self.address, tls=self.tls)
            tls = self.tls is not None
            if found != "refused" and _wrong_port.telling(found, ours, tls=tls):
                message = _wrong_port.explain(self.address, expected, found, tls=tls)
                raise _wrong_port.WrongPort(message) from exc
            raise

    def request(self, request: rq.Request[R]) -> Awaitable[R]:
        """Send ``request``; awaiting the result gives its result, or raises the core error
        its ERROR reply maps to (ConnectionError if no reply can come).

        Not a coroutine, for speed: on the common path it returns the very future that
        ``data_received`` resolves, so a call costs no coroutine of its own.
        """
        outbox = self._outbox
        if self._ended or outbox is None:
            raise ConnectionError(f"not connected: {self._why or 'call connect() first'}")
        spec = _REQUESTS.get(type(request))
        if spec is None:
            if type(request) is rq.Ack:
                return self._ack(request, outbox)  # type: ignore[return-value]
            raise TypeError(f"the custom protocol cannot carry {request!r}")
        free, pending = self._free_ids, self._pending
        if pending:
            rid = heappop(free) if free else self._new_id()
        else:  # nothing in flight: every id is free, and 1 is the lowest (see data_received)
            rid, self._next_id = 1, 2
            if free:
                free.clear()
        try:
            data = self._codec.send(spec[0](rid, request))
        except LocalProtocolError as exc:
            heappush(free, rid)
            raise error_for_local(exc) from None
        transport = self._transport
        if pending:
            outbox.write(data)  # others are in flight: join their batch
        elif outbox.idle and transport is not None and not transport.is_closing():
            transport.write(data)  # write_now's own path, without a call into the outbox
        else:
            outbox.write_now(data)
        # made after the write, so it is not on the path to the server (nor is what follows)
        future: asyncio.Future[R] = self._loop.create_future()  # type: ignore[union-attr]
        pending[rid] = (future, request, spec)
        if outbox.paused:
            return self._when_writable(future, outbox)
        return future

    async def close(self) -> None:
        """Close the connection (after writing what is queued, e.g. the last ACKs)."""
        self._closed_by_us = True
        transport = self._transport
        if transport is not None and not transport.is_closing():
            if self._outbox is not None:
                self._outbox.flush()
            transport.close()
            if self._gone is not None:
                with contextlib.suppress(Exception):
                    async with asyncio.timeout(1.0):
                        await asyncio.shield(self._gone)
        self._connection_ended(None)

    # -- tools' extras -------------------------------------------------------------------------
    async def ping(self, payload: bytes = b"") -> bytes:
        """Round trip PING/PONG (works before login too); returns the echoed payload."""
        return await self.request(PingRequest(payload))

    # -- requests ------------------------------------------------------------------------------
    async def _when_writable(self, future: asyncio.Future[R], outbox: _Outbox) -> R:
        """Backpressure: the server is not reading; wait, then wait for the reply."""
        try:
            await outbox.writable()
        except BaseException:  # cancelled: the request is sent, its answer is not wanted
            future.cancel()
            raise
        return await future

    async def _ack(self, request: rq.Ack, outbox: _Outbox) -> None:
        """Fire-and-forget (section 6.7): the server answers an ACK only if it fails."""
        try:
            outbox.write(self._codec.send(Ack(request.message_ids)))
        except LocalProtocolError as exc:
            raise error_for_local(exc) from None
        if outbox.paused:
            await outbox.writable()

    def _new_id(self) -> int:
        rid = self._next_id
        if rid > U32_MAX:
            raise RuntimeError("2^32-1 requests in flight")
        self._next_id += 1
        return rid

    # -- asyncio.Protocol ----------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        assert self._outbox is not None
        self._outbox.attach(self._transport)

    def data_received(self, data: bytes) -> None:
        codec, pending, free = self._codec, self._pending, self._free_ids
        try:
            codec.receive_data(data)
            while (event := codec.next_event()) is not NEED_DATA:
                # A response pairs with its request by id (ids start at 1); anything else
                # (DELIVER, WELCOME, an ERROR on id 0, a stray reply) is _unpaired's.
                rid = getattr(event, "request_id", 0)
                entry = pending.pop(rid, None)
                if entry is None:
                    self._unpaired(event)
                    continue
                future, request, spec = entry
                if pending:  # (when none is left in flight, request() starts again at 1)
                    heappush(free, rid)
                if type(event) is spec[1]:
                    try:
                        future.set_result(spec[2](request, event))
                    except InvalidStateError:
                        pass  # the caller stopped waiting (cancelled)
                else:
                    self._refused(future, request, event)
                if not codec.buffered:
                    # The read ended with this reply (one in flight: the usual case). Asking
                    # the codec again would only say NEED_DATA, and its caller wakes once this
                    # returns (issue 8: the path from the reply's bytes to its caller).
                    return
        except ProtocolError as exc:
            # before WELCOME it is most likely another protocol's port: connect() says so
            level = logging.WARNING if self.welcome is not None else logging.DEBUG
            log.log(level, "the server broke the protocol: %r", exc)
            self._connection_ended(f"the server broke the protocol: {exc}")
        except Exception as exc:  # a bug of ours: never let it reach the loop
            log.exception("reading from the server failed")
            self._connection_ended(f"the client failed: {exc!r}")

    def eof_received(self) -> bool:
        self._connection_ended(CloseReason.DISCONNECTED.value)
        return False  # the transport closes

    def pause_writing(self) -> None:
        if self._outbox is not None:
            self._outbox.pause()

    def resume_writing(self) -> None:
        if self._outbox is not None:
            self._outbox.resume()

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is None:
            self._connection_ended(CloseReason.DISCONNECTED.value)
        else:
            self._connection_ended(f"the connection broke: {exc}")
        if self._gone is not None and not self._gone.done():
            self._gone.set_result(None)

    # -- incoming ------------------------------------------------------------------------------
    def _unpaired(self, event: Any) -> None:
        """An event that answers no request in flight."""
        cls = type(event)
        if cls is Deliver:
            assert self._events is not None
            self._events.delivered(_delivery(event))
        elif cls is SentCopy:
            assert self._events is not None
            self._events.notified(ct.SentCopy(_delivery(event.message)))
        elif cls is ReadMark:
            assert self._events is not None
            self._events.notified(
                ct.ReadMarker(event.conversation_id, event.up_to_id, event.unread)
            )
        elif cls is MessagesGone:
            assert self._events is not None
            self._events.notified(ct.MessagesDeleted(event.message_ids))
        elif cls is Error and event.request_id == 0:
            self._notice(event)
        elif cls is Welcome:
            if self._welcome_waiter is not None and not self._welcome_waiter.done():
                self._welcome_waiter.set_result(event)
        else:
            raise ProtocolError(ErrorCode.MALFORMED, f"a reply to no request: {event!r}")

    @staticmethod
    def _refused(future: asyncio.Future[Any], request: Any, event: Any) -> None:
        """A response that is not the success reply: an ERROR, or a protocol violation."""
        if type(event) is not Error:
            raise ProtocolError(ErrorCode.MALFORMED, f"{event!r} answers {request!r}")
        if not future.done():
            future.set_exception(error_for_code(event.code, event.message))

    def _notice(self, error: Error) -> None:
        """An ERROR on request id 0 (section 7.10): a failed ACK, or the end."""
        if not closes(error.code):
            log.warning("the server refused an ACK: %s: %s", describe(error.code), error.message)
            return
        if self._welcome_waiter is not None and not self._welcome_waiter.done():
            self._welcome_waiter.set_exception(error_for_code(error.code, error.message))
        assert self._events is not None
        reason = reason_for_code(error.code)
        if reason is not None:  # the server ended the session; it closes next
            if self._why is None:
                self._why = reason.value
            self._events.session_ended(reason.value)
        else:
            self._connection_ended(f"{describe(error.code)}: {error.message}")

    def _connection_ended(self, reason: str | None) -> None:
        """The connection is gone (``reason`` None: we closed it): fail what waits, tell once."""
        if self._ended:
            return
        self._ended = True
        if self._why is None:
            self._why = reason
        error = ConnectionError(f"connection closed: {self._why or 'closed by the client'}")
        pending, self._pending = self._pending, {}
        for future, _, _ in pending.values():
            if not future.done():
                future.set_exception(error)
        if self._welcome_waiter is not None and not self._welcome_waiter.done():
            self._welcome_waiter.set_exception(error)
        if self._outbox is not None:
            self._outbox.release()
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()
        if self._events is not None:
            self._events.connection_lost(None if self._closed_by_us else self._why)


def _retrieved(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()


__all__ = ["CustomTransport", "PingRequest", "open_client"]
