"""The asyncio server of the custom protocol: a thin driver around the codec and ChatService.

Theory of operation (section numbers refer to PROTOCOL.md)
  * Each connection is an ``asyncio.Protocol``: ``data_received`` feeds the codec and handles
    the requests it decodes, one after the other, in arrival order (section 8). There is no
    reader task, and no task per request: a request runs *eagerly* (``_eager.run_eagerly``),
    on the stack of ``data_received``, and almost always finishes there.
  * Only a request that really waits (signup/login hash passwords in an executor; a store may
    do I/O) becomes a task, the connection's *blocker*. While there is a blocker, the
    connection decodes nothing further and stops reading the socket; when the blocker ends,
    it picks up the requests already buffered. So replies keep request order.
  * A request's reply is produced inside the request's own coroutine (``_serve``), so when it
    ran as a task the reply is still written in the same step that finished the service call,
    before the delivery pump can run: LOGGED_IN comes before the login's first DELIVER.
  * Output goes through an ``Outbox`` (``transports/_outbox.py``): the handling of one
    ``data_received`` is a burst whose replies leave in one ``write`` (a whole pipelined
    batch); frames produced elsewhere (the pump, a finished blocker, timers) leave at the end
    of the loop iteration, so a backlog of deliveries also costs one system call.
  * Backpressure: past HIGH_WATER unread bytes the outbox is paused. Then requests stop (a
    blocker waits in ``outbox.writable()``, and reading pauses) and the pump waits there too.
    A client that leaves our output unread for STALL_TIMEOUT with no progress, or whose
    session the service ended because its queue overflowed, is a slow consumer: its session
    ends (its messages stay pending) and the connection closes.
  * A successful SIGNUP/LOGIN starts one pump task that drains the session into push frames
    (stored backlog first, then live pushes): on a version 2 connection ``session.events()``
    (DELIVER, SENT_COPY, READ_MARK, MESSAGES_GONE, in commit order), on a version 1
    connection ``session.deliveries()`` (DELIVER in its version 1 layout, nothing else), so
    a version 1 client sees exactly version 1 (section 5).
  * A page of history or conversations that would not fit in one frame (64 KiB bodies) is
    cut short, with ``more`` set, so the client pages on (sections 7.11, 7.12).
  * The codec is pluggable (``codec=``): any ``Codec`` yielding the events of ``_events`` in
    the same frames, e.g. ``transports.protobuf_tcp``'s. The driver takes nothing else from
    the codec module: WELCOME's limits are the shared ones (see ``_greeted``).
  * Every way to end a connection goes through ``_begin_close``: the last frame (an ERROR, a
    DELETED, a reply to a failed LOGIN) is written, our side is shut for writing, and input is
    read and discarded for up to LINGER seconds (section 9.5). Closing with unread input would
    make the kernel send a RST, which can destroy that last frame before the client reads it.
  * Whatever happens, ``_finish`` cancels the connection's tasks, calls
    ``service.close_session`` and closes the socket. Nothing raised by one connection reaches
    the loop or any other session.
  * Bounds (issue 14, ``_bounds``): connection caps (a refusal is ERROR SERVER_BUSY), fair
    turns (``_handle_buffered`` yields the loop after ``requests_per_turn`` requests or
    TURN_SECONDS), byte budgets in and out shared by the whole server (``Guard``), and the
    time bounds (idle, partial frame, kernel stall) that one ``Sweeper`` per server checks.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import AsyncGenerator, Coroutine
from typing import Any, cast

from core import limits
from core import types as ct
from core.errors import AuthFailed, ChatError
from core.service import ChatService
from core.session import Session
from core.types import CloseReason, Delivery
from transports._guard import Guard, peer_host
from transports._outbox import Outbox
from transports._tls import ServerTls
from transports.custom._bounds import TURN_SECONDS, Bounded, Sweeper
from transports.custom._codec import Codec, CodecFactory, Connection, Role
from transports.custom._eager import Suspended, run_eagerly
from transports.custom._errors import code_for_close, code_for_error
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    ConnectionClosed,
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
from transports.custom._wire import (
    HANDSHAKE_TIMEOUT,
    MAX_DELETE_IDS,
    MAX_FRAME,
    ErrorCode,
    LocalProtocolError,
    ProtocolError,
)

log = logging.getLogger(__name__)

#: The session of every connection before its first request (``_ServerConnection._session``):
#: anonymous, never registered with a service, never closed; only read.
_NO_SESSION = Session()

#: The answer (AUTH_FAILED) to a DELETE_ACCOUNT of a version 1 or 2 connection, which has no
#: password field: deletion asks for the password since version 3 (PROTOCOL.md section 6.8).
OLD_DELETE = "deleting an account now needs your password; update your client"

#: The byte budget of one connection's output (the outbox's list plus the transport's write
#: buffer) before its writers wait: four maximal DELIVERs or thousands of small ones.
#: (Nginx's default send buffer is 4-8 pages; asyncio's default high-water mark is 64 KiB.)
HIGH_WATER = 256 * 1024
#: Seconds a client may leave our output unread, with no progress at all, before it is a slow
#: consumer. Generous: a phone in a tunnel recovers in seconds, a stuck process does not.
STALL_TIMEOUT = 30.0
STALL_CHECK = 0.5  # how often a waiting writer looks at the buffer and the session
#: Seconds we keep reading (and discarding) after our last frame, so it is not lost to a RST.
LINGER = 2.0
CLOSE_TIMEOUT = 5.0  # then the socket is aborted


def _deliver(d: Delivery) -> Deliver:
    """The DELIVER of a delivery (a version 1 codec writes only its first four fields)."""
    return Deliver(
        d.message_id,
        d.sent_at_ms,
        d.sender,
        d.body,
        d.participants,
        d.sender_deleted,
        d.conversation_id,
    )


class CustomServer:
    """What start_server returns: ``address`` is (host, port); ``await close()`` stops it."""

    def __init__(
        self,
        service: ChatService,
        handshake_timeout: float,
        codec: CodecFactory = Connection,
        guard: Guard | None = None,
    ) -> None:
        self.service = service
        self.address: tuple[str, int] = ("", 0)
        self._handshake_timeout = handshake_timeout
        self._codec = codec
        #: Our own guard (none was given) keeps this module's HIGH_WATER and STALL_TIMEOUT,
        #: read at each connection (tests tune them); a given one decides with its limits.
        self._own_limits = guard is None
        self.guard = guard if guard is not None else Guard()
        self._server: asyncio.AbstractServer | None = None
        self._connections: set[_ServerConnection] = set()
        self._sweeper = Sweeper(self._connections, self.guard.limits)

    def _new_connection(self) -> _ServerConnection:
        if self._own_limits:
            budget, stall = HIGH_WATER, STALL_TIMEOUT
        else:
            budget = self.guard.limits.outbound_per_connection
            stall = self.guard.limits.stall_timeout
        return _ServerConnection(
            self.service,
            self._codec(Role.SERVER),
            self._handshake_timeout,
            self._connections,
            self.guard,
            budget,
            stall,
        )

    async def close(self) -> None:
        """Stop listening, tell every client (ERROR SHUTDOWN), close every connection."""
        self._sweeper.stop()
        if self._server is not None:
            self._server.close()
        connections = list(self._connections)
        for connection in connections:
            connection.shutdown()
        if connections:
            closed = [c.closed for c in connections]
            _, pending = await asyncio.wait(closed, timeout=LINGER + 1)
            if pending:
                for connection in connections:
                    connection.abort()
                await asyncio.wait(pending, timeout=1.0)
            tasks = [task for c in connections for task in c.tasks()]
            await asyncio.gather(*tasks, return_exceptions=True)  # (cancelled by _finish)
        if self._server is not None:
            await self._server.wait_closed()


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    codec: CodecFactory = Connection,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
    guard: Guard | None = None,
    tls: ServerTls | None = None,
) -> CustomServer:
    """Listen on (host, port) and serve ``service`` over the custom protocol (or over another
    body encoding in the same frames: ``codec``). ``guard``: the process-wide bounds shared
    with the other listeners (None: one of this server's own, with the default limits).
    ``tls``: serve over TLS (the TLS handshake is bounded by ``handshake_timeout`` too)."""
    server = CustomServer(service, handshake_timeout, codec, guard)
    loop = asyncio.get_running_loop()
    server._server = await loop.create_server(
        server._new_connection,
        host,
        port,
        backlog=server.guard.limits.backlog,
        ssl=tls.context() if tls is not None else None,
        ssl_handshake_timeout=handshake_timeout if tls is not None else None,
    )
    bound = server._server.sockets[0].getsockname()
    server.address = (bound[0], bound[1])
    server._sweeper.start()
    return server


class _ServerConnection(Bounded, asyncio.Protocol):
    def __init__(
        self,
        service: ChatService,
        codec: Codec,
        handshake_timeout: float,
        registry: set[_ServerConnection],
        guard: Guard,
        budget: int,
        stall_timeout: float,
    ) -> None:
        self._service = service
        self._registry = registry
        self._loop = asyncio.get_running_loop()
        self.closed: asyncio.Future[None] = self._loop.create_future()
        self._handshake_timeout = handshake_timeout
        self._transport: asyncio.Transport | None = None
        self._peer: Any = None
        self._codec = codec
        #: Opened at the first request (with the client's address), not with the connection:
        #: a session (and its queue and event) is a third of what an idle connection held.
        self._session: Session = _NO_SESSION
        self._outbox = Outbox(
            self._loop, budget=budget, stall_timeout=stall_timeout, stall_check=STALL_CHECK
        )
        self._init_bounds(guard, stall_timeout)
        self._blocker: asyncio.Task[None] | None = None  # a request (or a wait) in progress
        self._closing = False  # the last frame is out: nothing more is sent or handled
        self._finished = False
        self._timer: asyncio.TimerHandle | None = None  # HELLO deadline, then linger/abort
        self._epoch = 0  # bumps at each login/logout; a pump of an older epoch writes nothing
        self._pumps: set[asyncio.Task[None]] = set()
        self._eof = False  # the client closed its side
        self._handlers: dict[type, Any] | None = None  # (built at the first request)

    def _request_handlers(self) -> dict[type, Any]:
        """Request type -> handler. Built at a connection's first request, not with the
        connection: a dozen bound methods were a third of what an idle connection held (objects
        the collector walks, 20,000 idle connections in the hostile scene)."""
        return {
            Signup: self._signup,
            Login: self._login,
            Logout: self._logout,
            ListAccounts: self._list_accounts,
            Send: self._send,
            Ack: self._ack,
            DeleteAccount: self._delete_account,
            Ping: self._ping,
            ListConversations: self._list_conversations,
            ReadHistory: self._read_history,
            MarkRead: self._mark_read,
            DeleteMessages: self._delete_messages,
            Resume: self._resume,
            ChangePassword: self._change_password,
        }

    def tasks(self) -> list[asyncio.Task[Any]]:
        """The tasks this connection still owns (the pump, a suspended request)."""
        tasks = list(self._pumps)
        if self._blocker is not None:
            tasks.append(self._blocker)
        return tasks

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = transport = cast(asyncio.Transport, transport)
        self._outbox.attach(transport)
        self._peer = transport.get_extra_info("peername")
        self._registry.add(self)
        refusal = self._admit(transport)
        if refusal is not None:
            self._end_with(ErrorCode.SERVER_BUSY, str(refusal))
            return
        self._timer = self._loop.call_later(self._handshake_timeout, self._timed_out)

    def data_received(self, data: bytes) -> None:
        if not self._closing:  # (else lingering: discard until the client closes)
            self._handle_buffered(data)

    def eof_received(self) -> bool:
        self._eof = True
        if self._closing:
            self._finish()  # lingering, and the client has read our last frame and closed
        else:
            self._handle_buffered(b"")  # the codec reports a clean end or a cut frame
        # we close the socket ourselves, once our output is written; over TLS the transport
        # closes itself after writing it (and asyncio warns when asked to keep it open)
        transport = self._transport
        return transport is None or transport.get_extra_info("sslcontext") is None

    def connection_lost(self, exc: Exception | None) -> None:
        self._finish()
        if self._timer is not None:
            self._timer.cancel()
        self._outbox.release()
        self._registry.discard(self)
        self._transport = None
        self._release()
        if not self.closed.done():
            self.closed.set_result(None)

    # -- requests ----------------------------------------------------------------------------
    def _handle_buffered(self, data: bytes | None = None) -> None:
        """Feed ``data`` (if any; ``b""`` is the end of the stream) to the codec, then handle
        the complete requests it holds, unless one is still in progress: one turn's worth
        (``requests_per_turn`` or TURN_SECONDS), the rest at the next turn (``_bounds``)."""
        outbox = self._outbox
        outbox.begin_burst()
        try:
            codec = self._codec
            if data is not None:
                codec.receive_data(data)
            left = self._limits.requests_per_turn
            turn_ends = time.perf_counter() + TURN_SECONDS
            while not self._closing and self._blocker is None:
                if outbox.paused:
                    self._block(self._wait_until_writable())
                    break
                try:
                    event = codec.next_event()
                except ProtocolError as exc:  # (at the end of the stream: a truncated frame)
                    log.info("protocol error from %s: %r", self._peer, exc)
                    self._end_with(exc.code, exc.message)
                    break
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    self._finish()  # every request was answered; the client is done
                    break
                if isinstance(event, Hello):
                    self._greeted()
                    continue
                self._block(self._serve(event))
                left -= 1
                if (
                    (left <= 0 or time.perf_counter() > turn_ends)
                    and self._blocker is None
                    and codec.buffered  # (else the turn ends here anyway: no need to yield)
                ):
                    self._yield_turn()
                    break
            if not self._closing and (
                codec.buffered or self._held_in or self._partial_since is not None
            ):
                self._count_inbound()  # (a turn that ends with nothing held costs nothing)
        except Exception:  # a bug of ours: log it, never let it reach the loop
            log.exception("connection %s failed", self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")
        finally:
            outbox.end_burst()

    def _block(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now; if it has to wait, nothing else is handled until it is done."""
        outcome = run_eagerly(coro)
        if isinstance(outcome, Suspended):
            self._blocker = outcome.task
            outcome.task.add_done_callback(self._unblocked)
            self._update_reading()

    def _unblocked(self, task: asyncio.Task[None]) -> None:
        if task is not self._blocker:
            return
        self._blocker = None
        if not task.cancelled() and task.exception() is not None:  # (_serve catches all)
            log.error("request from %s failed", self._peer, exc_info=task.exception())
            self._end_with(ErrorCode.INTERNAL, "internal server error")
        if self._closing or self._transport is None:
            return
        self._update_reading()
        if not self._yielded:  # (else the scheduled turn picks them up)
            self._handle_buffered()

    async def _wait_until_writable(self) -> None:
        if not await self._writable():
            self._slow_consumer()

    async def _writable(self) -> bool:
        """Backpressure: wait until the client reads. False if it is a slow consumer."""
        if self._closing:
            return True
        return await self._outbox.writable(self._gave_up)

    def _gave_up(self) -> bool:
        """While a writer waits: the service ended the session (its queue overflowed)."""
        return self._session.closed or self._closing

    async def _serve(self, event: Any) -> None:
        """Handle one request: call the service, write the reply, follow the session's end."""
        try:
            handlers = self._handlers
            if handlers is None:  # the first request: now it needs a session and handlers
                handlers = self._handlers = self._request_handlers()
                self._session = self._service.open_session(peer_host(self._peer))
            reply = await handlers[type(event)](event)
        except ChatError as exc:
            code = code_for_error(exc, self._codec.version)
            reply = Error(getattr(event, "request_id", 0), code, str(exc))
        except Exception:
            log.exception("request %r from %s failed", type(event).__name__, self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")
            return
        if type(reply) is bytes:  # (a page, encoded to fit one frame)
            if not self._closing:
                self._outbox.write(reply)
        elif reply is not None:
            self._reply(reply)
        if self._session.closed:
            self._session_ended(notice=not isinstance(reply, Deleted))

    def _greeted(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        self._idle_since = self._loop.time()  # (a session is due within idle_timeout)
        self._waiting(True)  # (waits from now on: behind connections that never said HELLO)
        # The limits are shared by every codec on these drivers: MAX_FRAME is the framing's
        # (the same varint frames), the others are the chat core's.
        version = self._codec.version or 1
        self._reply(Welcome(version, MAX_FRAME, limits.MAX_BODY_BYTES, limits.MAX_RECIPIENTS))

    # Each handler calls the service and returns the reply, with no await after the service
    # call, so the reply is written before the pump can observe what the call changed.
    async def _signup(self, event: Signup) -> SignedUp:
        result = await self._service.signup(self._session, event.username, event.password)
        self._start_pump()
        return SignedUp(event.request_id, result.pending, result.resume_token)

    async def _login(self, event: Login) -> LoggedIn:
        result = await self._service.login(self._session, event.username, event.password)
        self._start_pump()
        return LoggedIn(event.request_id, result.pending, result.resume_token, result.username)

    async def _logout(self, event: Logout) -> LoggedOut:
        await self._service.logout(self._session)
        self._epoch += 1  # no DELIVER of the ended login may follow LOGGED_OUT
        self._idle_since = self._loop.time()
        self._waiting(True)
        return LoggedOut(event.request_id)

    async def _list_accounts(self, event: ListAccounts) -> Accounts:
        page = await self._service.list_accounts(
            self._session, event.pattern, event.after, event.limit
        )
        return Accounts(event.request_id, page.usernames, page.more)

    async def _send(self, event: Send) -> Sent:
        result = await self._service.send(self._session, event.recipients, event.body)
        return Sent(
            event.request_id,
            result.message_id,
            result.sent_at_ms,
            result.unknown_recipients,
            result.conversation_id,
        )

    async def _ack(self, event: Ack) -> None:
        await self._service.ack(self._session, event.message_ids)

    async def _delete_account(self, event: DeleteAccount) -> Deleted:
        if (self._codec.version or 1) < 3:  # its DELETE_ACCOUNT has no password field: the
            try:  # service refuses it (after its other checks: NOT_LOGGED_IN, FORBIDDEN)
                await self._service.delete_account(self._session, event.username, "")
            except AuthFailed:
                raise AuthFailed(OLD_DELETE) from None
        await self._service.delete_account(self._session, event.username, event.password)
        return Deleted(event.request_id)

    # version 3 (sections 6.14, 6.15)
    async def _resume(self, event: Resume) -> LoggedIn:
        result = await self._service.resume(self._session, event.token)
        self._start_pump()
        return LoggedIn(event.request_id, result.pending, result.resume_token, result.username)

    async def _change_password(self, event: ChangePassword) -> PasswordChanged:
        changed = await self._service.change_password(
            self._session, event.old_password, event.new_password, event.end_other_sessions
        )
        return PasswordChanged(event.request_id, changed.resume_token, changed.sessions_ended)

    async def _ping(self, event: Ping) -> Pong:
        return Pong(event.request_id, event.payload)

    # version 2 (sections 6.10-6.13)
    async def _list_conversations(self, event: ListConversations) -> bytes:
        page = await self._service.list_conversations(self._session, event.before_id, event.limit)
        return self._fitted(Conversations(event.request_id, page.conversations, page.more))

    async def _read_history(self, event: ReadHistory) -> bytes:
        page = await self._service.read_history(
            self._session, event.participants, event.before_id, event.limit, event.conversation_id
        )
        return self._fitted(
            History(
                event.request_id,
                page.conversation_id,
                page.participants,
                page.messages,
                page.more,
                page.deleted_participants,
                page.read_up_to,
            )
        )

    async def _mark_read(self, event: MarkRead) -> MarkedRead:
        marker = await self._service.mark_read(self._session, event.conversation_id, event.up_to_id)
        return MarkedRead(event.request_id, marker.conversation_id, marker.up_to_id, marker.unread)

    async def _delete_messages(self, event: DeleteMessages) -> Removed:
        await self._service.delete_messages(self._session, event.message_ids, event.for_everyone)
        return Removed(event.request_id)

    def _fitted(self, page: Conversations | History) -> bytes:
        """The frame of a page, cut short (``more`` set) until it fits in one frame."""
        items = "conversations" if isinstance(page, Conversations) else "messages"
        while True:
            try:
                return self._codec.send(page)
            except LocalProtocolError as exc:
                kept = getattr(page, items)
                if exc.code is not ErrorCode.FRAME_TOO_LARGE or len(kept) <= 1:
                    raise
                page = dataclasses.replace(page, **{items: kept[: len(kept) // 2], "more": True})

    # -- deliveries ----------------------------------------------------------------------------
    def _start_pump(self) -> None:
        self._idle_since = None  # logged in
        self._waiting(False)  # (never evicted from now on)
        self._epoch += 1
        for old in self._pumps:
            old.cancel()
        pump = self._loop.create_task(self._pump(self._epoch), name=f"custom-pump-{self._peer}")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _pump(self, epoch: int) -> None:
        session = self._session
        v2 = (self._codec.version or 1) >= 2
        try:
            # (both are async generators: close the stream when the pump stops early)
            stream = cast(
                "AsyncGenerator[ct.SessionEvent, None]",
                session.events() if v2 else session.deliveries(),
            )
            async with contextlib.aclosing(stream) as events:
                async for d in events:
                    if epoch != self._epoch or self._closing:
                        return
                    if type(d) is Delivery:
                        self._reply(_deliver(d))
                    else:
                        self._notice(d)
                    if self._outbox.paused and not await self._writable():
                        self._slow_consumer()
                        return
            if session.closed and epoch == self._epoch:
                self._session_ended(notice=True)
        except ConnectionError:
            pass
        except Exception:
            log.exception("delivery to %s failed", self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")

    def _notice(self, notice: Any) -> None:
        """A version 2 push besides DELIVER (section 7.13-7.15)."""
        if isinstance(notice, ct.SentCopy):
            self._reply(SentCopy(_deliver(notice.message)))
        elif isinstance(notice, ct.ReadMarker):
            self._reply(ReadMark(notice.conversation_id, notice.up_to_id, notice.unread))
        elif isinstance(notice, ct.MessagesDeleted):
            ids = tuple(sorted(set(notice.message_ids)))
            for start in range(0, len(ids), MAX_DELETE_IDS):  # (an account purge: many)
                self._reply(MessagesGone(ids[start : start + MAX_DELETE_IDS]))

    # -- output ------------------------------------------------------------------------------
    def _reply(self, event: Any) -> None:
        if not self._closing:
            self._outbox.write(self._codec.send(event))

    def _slow_consumer(self) -> None:
        """End the session of a client that reads too slowly (section 9.4), then close."""
        if self._closing:
            return
        if not self._session.closed and self._session is not _NO_SESSION:
            # (else the service ended it already, for its reason, or there is none)
            log.warning("%s reads too slowly; ending its session", self._peer)
            self._service.close_session(self._session, CloseReason.SLOW_CONSUMER)
        self._session_ended(notice=True)

    # -- ending ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The server is stopping: tell the client, then close."""
        self._end_with(ErrorCode.SHUTDOWN, CloseReason.SHUTDOWN.value)

    def abort(self) -> None:
        """Drop the connection at once (the server ran out of patience)."""
        if self._transport is not None:
            self._transport.abort()

    def _session_ended(self, *, notice: bool) -> None:
        """The service ended our session: push its reason (section 9), then close."""
        reason = self._session.close_reason
        code = code_for_close(reason)
        if notice and code is not None and reason is not None:
            self._end_with(code, reason.value)
        else:
            self._begin_close()

    def _end_with(self, code: ErrorCode, message: str) -> None:
        """Send a connection-ending ERROR on request id 0 and close."""
        self._reply(Error(0, code, message))
        self._begin_close()

    def _begin_close(self) -> None:
        if self._closing:
            return
        self._outbox.flush()
        self._closing = True
        self._give_back()
        self._cancel_tasks()
        transport = self._transport
        if transport is None or transport.is_closing():
            return
        if self._eof:  # the client sends nothing more: no RST to fear, close now
            self._finish()
            return
        if transport.can_write_eof():
            try:
                transport.write_eof()
            except (OSError, RuntimeError):
                pass
        self._update_reading()  # read (and discard) whatever still comes
        self._set_timer(LINGER, self._finish)

    def _timed_out(self) -> None:
        self._timer = None
        if not self._closing:
            self._end_with(ErrorCode.BAD_HANDSHAKE, "no complete HELLO within the time limit")

    def _finish(self) -> None:
        if self._finished:
            return
        self._outbox.flush()
        self._finished = self._closing = True
        self._cancel_tasks()
        if self._session is not _NO_SESSION:
            self._service.close_session(self._session)
        if self._transport is not None and not self._transport.is_closing():
            self._transport.close()  # after what is buffered has been written
            self._set_timer(CLOSE_TIMEOUT, self.abort)  # unless the client reads nothing

    def _cancel_tasks(self) -> None:
        current = asyncio.current_task()
        for pump in self._pumps:
            if pump is not current:
                pump.cancel()
        if self._blocker is not None and self._blocker is not current:
            self._blocker.cancel()

    def _set_timer(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)


__all__ = ["CustomServer", "start_server"]
