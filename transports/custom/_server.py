"""The asyncio server of the custom protocol: a thin driver around the codec and ChatService.

Four modules: this one (a connection's life: read, feed, dispatch, reply, close), the
requests and pushes (``_server_requests``: what each request asks of the service, the pump),
the bounds (``_bounds``: caps, budgets, fair turns, the sweeper) and the listener's accept
(``_accept``: a bounded number per loop iteration, refusals at the accept, parking).

Theory of operation (section numbers refer to PROTOCOL.md)
  * Each connection is an ``asyncio.Protocol``: ``data_received`` feeds the codec and handles
    the requests it decodes, one after the other, in arrival order (section 8). There is no
    reader task, and no task per request: a request runs *eagerly* (``_eager.start_eagerly``),
    on the stack of ``data_received``, and almost always finishes there.
  * Only a request that really waits (signup/login hash passwords in an executor; a store may
    do I/O) goes on later, as a ``_eager.Continuation`` (a Future that resumes the coroutine
    without a task), the connection's *blocker*. While there is a blocker, the
    connection decodes nothing further and stops reading the socket; when the blocker ends,
    it picks up the requests already buffered. So replies keep request order.
  * Except SENDs, which are pipelined (issue 10, ``_pipeline``; the bookkeeping is
    transports/_pipeline.py's ``SendPipeline``, as in the websocket server): a SEND that waits
    for the store's commit (the SQLite store's group commit, ``core.sqlite_writer``) lets the
    connection go on to the next request when that is a SEND too, so a connection's sends
    share one transaction instead of one each. Their store calls start in request order, so
    the store keeps that order (message ids increase with it); each reply waits for the one
    before it (``_serve``'s ``after``), so replies keep it too. Any other request waits until
    the sends before it are answered (``_after_sends``). Bounded per connection by
    ``sends_in_flight`` and ``send_bytes_in_flight`` (the SEND frames' bytes, also counted
    against the server-wide inbound budget); a SEND past either waits like any other request.
    On a store that queues a send at once and wakes it from its commit (SqliteStore's
    ``add_message_future``), the connections are ``_StagedConnection``s: a SEND is
    ``ChatService.send_begun`` (the checks, the write queued), and ``send_stored`` called
    from the writer after the commit that holds it, with no coroutine and no Continuation
    (issue 10: callgrind, bench/micro_sqlite_probe.py, ~17,000 instructions less per durable
    send than a Continuation; stepping ``ChatService.send``'s coroutine, as the driver did
    before, cost ~1,100 more than these two calls, one send in flight).
  * A request's reply is produced inside the request's own coroutine (``_serve``), so when it
    ran as a task the reply is still written in the same step that finished the service call,
    before the delivery pump can run: LOGGED_IN comes before the login's first DELIVER.
  * Output goes through an ``Outbox`` (``transports/_outbox.py``). A reply leaves at once
    (``write_now``) unless frames wait before it; when one ``data_received`` brought several
    requests, their handling is a burst whose replies leave in one ``write`` (a whole
    pipelined batch). Pushes (the pump) leave at the end of the loop iteration, so a backlog
    of deliveries also costs one system call.
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
  * The path of a request is the server's hot path (issue 10: instructions per send,
    measured with callgrind): no task, no timer and no object per request beyond the event,
    the service's result and the reply; each Python call on it is worth counting (one costs
    ~500 instructions on CPython 3.11, a whole SEND ~74,000). So SEND is served in ``_serve``
    itself, without a handler coroutine, and ``data_received`` is ``_handle_buffered``. On a
    store that never waits to add (the memory store) there is no coroutine at all: ``_pipeline``
    calls ``ChatService.send_now`` (the same checks and steps as ``send``) and writes the SENT
    (~3,000 instructions less a send than through ``_serve`` and ``send``). With
    one request in flight (the latency rows) the server sleeps between requests and each one
    starts cold: its path up to the reply's ``write`` took ~15 us, where a whole SEND warm
    (back to back, in process) takes ~8 us. Fewer Python calls and fewer objects per send
    shorten it (issue 10; the commit that wrote this paragraph has the timings per step).
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
import logging
import time
from collections import deque
from collections.abc import Callable, Coroutine
from typing import Any, cast

from core import limits
from core.errors import ChatError
from core.frozen import builder
from core.service import ChatService
from core.session import Session, State
from core.types import CloseReason, SendResult
from transports._eager import FINISHED, start_eagerly
from transports._guard import Guard, peer_host
from transports._outbox import Outbox
from transports._pipeline import SendPipeline
from transports._tls import ServerTls
from transports.custom._accept import Acceptor
from transports.custom._bounds import (
    TURN_SECONDS,
    Bounded,
    Ends,
    Sweeper,
    log_protocol_error,
)
from transports.custom._codec import Codec, CodecFactory, Connection, Role
from transports.custom._errors import code_for_close, code_for_error
from transports.custom._events import (
    NEED_DATA,
    ConnectionClosed,
    Deleted,
    Error,
    Hello,
    Send,
    Sent,
    Welcome,
)
from transports.custom._server_requests import OLD_DELETE, Requests
from transports.custom._wire import (
    HANDSHAKE_TIMEOUT,
    MAX_FRAME,
    ErrorCode,
    ProtocolError,
)

log = logging.getLogger(__name__)

#: The session of every connection before its first request (``_ServerConnection._session``):
#: anonymous, never registered with a service, never closed; only read.
_NO_SESSION = Session()
_CLOSED = State.CLOSED
#: The sends in flight of every connection before its first request: none, ever (``_pipeline``
#: runs only once a request made the connection's own, with its handlers: that one holds a
#: bound method of the connection, a reference cycle an idle connection must not have, since a
#: closed one is freed by its reference count: tests/hardening/test_gc_policy.py). Only read.
_NO_SENDS = SendPipeline(Guard(), lambda error: None)
#: The SENT answering request ``rid`` with ChatService.send's result ``r``, in one call
#: (``_serve`` and ``_StagedConnection``).
_sent_of: Callable[[int, SendResult], Sent] = builder(
    Sent,
    "rid, r",
    ("rid", "r.message_id", "r.sent_at_ms", "r.unknown_recipients", "r.conversation_id"),
)

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
        self._server: Acceptor | None = None
        self._connections: set[_ServerConnection] = set()
        self._sweeper = Sweeper(self._connections, self.guard.limits)
        self._ends = Ends(asyncio.get_running_loop())  # (mass closes, in turn: _bounds)
        #: The store queues a send at once and wakes it from its commit (SqliteStore): the
        #: connections drive their SENDs themselves (``_StagedConnection``).
        self._staged_sends = getattr(service.store, "add_message_future", None) is not None

    def _new_connection(self) -> _ServerConnection:
        if self._own_limits:
            budget, stall = HIGH_WATER, STALL_TIMEOUT
        else:
            budget = self.guard.limits.outbound_per_connection
            stall = self.guard.limits.stall_timeout
        return (_StagedConnection if self._staged_sends else _ServerConnection)(
            self.service,
            self._codec(Role.SERVER),
            self._handshake_timeout,
            self._connections,
            self.guard,
            budget,
            stall,
            self._ends,
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
    server._server = await Acceptor.listen(  # (accepts_per_turn per loop iteration: _bounds)
        host,
        port,
        server._new_connection,
        server.guard.limits,
        tls=tls.context() if tls is not None else None,
        tls_handshake_timeout=handshake_timeout if tls is not None else None,
        guard=server.guard,
        # (a refusal's frame, as a new connection's codec writes it: a fresh codec each, since
        # a codec that sent a session-ending ERROR refuses to send anything more)
        encode=lambda error: codec(Role.SERVER).send(error),
    )
    bound = server._server.sock.getsockname()
    server.address = (bound[0], bound[1])
    server._sweeper.start()
    return server


class _ServerConnection(Requests, Bounded, asyncio.Protocol):
    #: Sends staged in the store's group commit (``_StagedConnection``): none here.
    _staged: deque[_Staged] | tuple[()] = ()
    _drained: asyncio.Future[None] | None = None

    def __init__(
        self,
        service: ChatService,
        codec: Codec,
        handshake_timeout: float,
        registry: set[_ServerConnection],
        guard: Guard,
        budget: int,
        stall_timeout: float,
        ends: Ends,
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
        self._init_bounds(guard, stall_timeout, ends)
        self._blocker: asyncio.Future[None] | None = None  # a request (or a wait) in progress
        #: SENDs in flight together, each waiting for the commit that holds it (``_pipeline``):
        #: made with the handlers, at the first request (``_serve``).
        self._pipelined = _NO_SENDS
        self._closing = False  # the last frame is out: nothing more is sent or handled
        self._finished = False
        self._timer: asyncio.TimerHandle | None = None  # HELLO deadline, then linger/abort
        self._epoch = 0  # bumps at each login/logout; a pump of an older epoch writes nothing
        self._pumps: set[asyncio.Task[None]] = set()
        self._eof = False  # the client closed its side
        self._handlers: dict[type, Any] | None = None  # (built at the first request)
        #: ``ChatService.send_now`` when the store never waits to add (the memory store): a
        #: SEND is then served on the stack of ``data_received``, with no coroutine at all.
        self._send_now = service.send_now

    def tasks(self) -> list[asyncio.Future[Any]]:
        """The tasks this connection still owns (the pump, a suspended request)."""
        tasks = [*self._pumps, *self._pipelined.sends]
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
            self._refuse(refusal)  # (ERROR SERVER_BUSY, then close: _bounds)
            return
        self._timer = self._loop.call_later(self._handshake_timeout, self._timed_out)

    def eof_received(self) -> bool:
        if self._end_later():  # (no session: ended in turn, a few per loop iteration: _bounds)
            return True
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
        (``requests_per_turn`` or TURN_SECONDS), the rest at the next turn (``_bounds``).
        Also ``data_received`` (one call less on the path of every request)."""
        if self._closing:  # (lingering: discard until the client closes)
            return
        outbox = self._outbox
        codec = self._codec
        burst = False  # begun once a second request waits behind the first
        try:
            if data is not None:
                codec.receive_data(data)
            left = self._limits.requests_per_turn
            turn_ends = time.perf_counter() + TURN_SECONDS
            while not self._closing and self._blocker is None:
                if outbox.paused:
                    self._block(self._wait_until_writable())
                    break
                held = codec.buffered
                try:
                    event = codec.next_event()
                except ProtocolError as exc:  # (at the end of the stream: a truncated frame)
                    exc.__traceback__ = None  # (the codec keeps exc: its frames hold us, a cycle)
                    log_protocol_error(self._loop.time(), f"{self._peer}: {exc!r}")
                    if self._pipelined.sends or self._staged:  # (their replies go first)
                        self._block(self._end_after_sends(exc.code, exc.message))
                    else:
                        self._end_with(exc.code, exc.message)
                    break
                if event is NEED_DATA:
                    break
                if not burst and codec.buffered:  # (pipelined: their replies leave together)
                    outbox.begin_burst()
                    burst = True
                kind = type(event)
                if kind is Send and self._handlers is not None:  # (logged in, or it fails)
                    self._pipeline(event, held - codec.buffered)
                elif self._pipelined.sends or self._staged:  # anything else waits for them
                    self._block(self._after_sends(None if kind is ConnectionClosed else event))
                    # (ConnectionClosed comes again once they are: the codec repeats it)
                elif kind is ConnectionClosed:
                    self._finish()  # every request was answered; the client is done
                    break
                elif kind is Hello:
                    self._greeted()
                    continue
                else:
                    blocker = start_eagerly(self._serve(event))
                    if blocker is not None:
                        self._blocked_by(blocker)
                left -= 1
                if not codec.buffered:  # (the turn ends here anyway: no need to yield)
                    if data:  # (bytes came, so no end of stream yet: nothing more to read)
                        break
                    continue
                if (left <= 0 or time.perf_counter() > turn_ends) and self._blocker is None:
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
            if burst:
                outbox.end_burst()

    data_received = _handle_buffered  # (asyncio.Protocol)

    def _pipeline(self, event: Any, size: int) -> None:
        """Serve a SEND ``event`` (its frame: ``size`` bytes). When it waits for its commit, the
        connection goes on with the next request, so the sends of one connection share a
        group commit; with one request at a time, a group held at most one send per
        connection. A SEND beyond this connection's bounds, or one the server-wide inbound
        budget has no room for, waits until the sends before it are answered.

        On a store that never waits to add (``_send_now``) no send is ever in flight: the
        send, its reply and its write happen here, with no coroutine of ours or the service's
        (issue 10: two coroutines less a send than ``_serve``; the reply still leaves after
        the store holds the message, Rule 9)."""
        send_now = self._send_now
        if send_now is not None:
            try:
                reply = _sent_of(
                    event.request_id, send_now(self._session, event.recipients, event.body)
                )
            except Exception as exc:
                reply = self._reply_for(event, exc)
            self._answer(reply, now=True)
            return
        pipelined = self._pipelined
        if not pipelined.sends:  # (a first SEND in flight pins what one request always did:
            size = 0  # not counted)
        elif not pipelined.admits(size):
            self._block(self._after_sends(event))
            return
        # (``start_eagerly`` written out: a Python call less, and only a send that waits goes
        # on as a continuation, in the pipeline until it ends)
        coro = self._serve(event, pipelined.last)
        first = next(coro.__await__(), FINISHED)
        if first is not FINISHED:
            pipelined.add(coro, first, size)
        elif size:  # (answered at once: the store did not wait)
            self._guard.give_back_inbound(size)

    def _reply_for(self, event: Any, end: Exception) -> Any:
        """The reply to the SEND ``event`` whose send raised ``end``: the ERROR of a
        ChatError, or _END (a bug: logged)."""
        if isinstance(end, ChatError):
            return Error(event.request_id, code_for_error(end, self._codec.version), str(end))
        log.error("request %r from %s failed", type(event).__name__, self._peer, exc_info=end)
        return _END

    def _answer(self, reply: Any, *, now: bool) -> None:
        """Write a send's reply (or end the connection: _END), then follow the session."""
        if reply is _END:
            self._end_with(ErrorCode.INTERNAL, "internal server error")
            return
        if not self._closing:
            frame = self._codec.send(reply)
            if now:
                self._outbox.write_now(frame)
            else:  # (the replies of one commit leave together)
                self._outbox.write(frame)
        if self._session.state is _CLOSED:
            self._session_ended(notice=True)

    def _send_failed(self, error: BaseException) -> None:
        """A pipelined send's coroutine raised (a bug: ``_serve`` catches all)."""
        log.error("request from %s failed", self._peer, exc_info=error)
        self._end_with(ErrorCode.INTERNAL, "internal server error")

    async def _after_sends(self, event: Any) -> None:
        """Wait until the sends in flight are answered (the last one's reply is written
        after all the others'), then serve ``event`` (None: nothing; the blocker ending
        makes the connection look at its input again)."""
        await self._pipelined.answered()
        while self._staged:  # (staged sends, _StagedConnection: answered in order)
            if self._drained is None:
                self._drained = self._loop.create_future()
            await self._drained
        if event is not None and not self._closing:
            await self._serve(event)

    async def _end_after_sends(self, code: ErrorCode, message: str) -> None:
        """A frame we cannot read came behind sends in flight: answer them first (each SENT
        means stored, as a SEND before the bad frame gets on a store that never waits), then
        end the connection with the ERROR. Nothing after that frame is read."""
        await self._after_sends(None)
        self._end_with(code, message)

    def _block(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now; if it has to wait, nothing else is handled until it is done."""
        blocker = start_eagerly(coro)
        if blocker is not None:
            self._blocked_by(blocker)

    def _blocked_by(self, task: asyncio.Future[None]) -> None:
        self._blocker = task
        task.add_done_callback(self._unblocked)
        self._update_reading()

    def _unblocked(self, task: asyncio.Future[None]) -> None:
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

    async def _serve(self, event: Any, after: asyncio.Future[None] | None = None) -> None:
        """Handle one request: call the service, write the reply (once ``after``, a pipelined
        SEND before it, has written its own), follow the session's end."""
        reply: Any
        try:
            handlers = self._handlers
            if handlers is None:  # the first request: now it needs a session and handlers
                handlers = self._handlers = self._request_handlers()
                self._pipelined = SendPipeline(self._guard, self._send_failed)
                self._session = self._service.open_session(peer_host(self._peer))
            if type(event) is Send:  # (the hot path: one coroutine less than a handler)
                result = await self._service.send(self._session, event.recipients, event.body)
                reply = _sent_of(event.request_id, result)
            else:  # (a search is refused while the loop runs behind: core.pacing, Overloaded)
                reply = await handlers[type(event)](event)
        except ChatError as exc:
            code = code_for_error(exc, self._codec.version)
            reply = Error(getattr(event, "request_id", 0), code, str(exc))
        except Exception:
            log.exception("request %r from %s failed", type(event).__name__, self._peer)
            if after is not None and not after.done():  # (the replies before it go first)
                await asyncio.wait((after,))
            self._end_with(ErrorCode.INTERNAL, "internal server error")
            return
        if after is not None and not after.done():
            await asyncio.wait((after,))
        if reply is not None and not self._closing:
            # (a page comes encoded already, cut to fit one frame)
            frame = reply if type(reply) is bytes else self._codec.send(reply)
            if self._pipelined.sends:  # (pipelined sends: the replies of one commit leave together)
                self._outbox.write(frame)
            else:
                self._outbox.write_now(frame)
        if self._session.state is _CLOSED:
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

    # -- output ------------------------------------------------------------------------------
    def _reply(self, event: Any) -> None:
        """Write a reply (or a connection-ending ERROR): at once, unless frames wait before it."""
        if not self._closing:
            self._outbox.write_now(self._codec.send(event))

    def _push(self, event: Any) -> None:
        """Write a push: with the others of this loop iteration, in one system call."""
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
        for send in self._pipelined.sends:
            if send is not current:
                send.cancel()

    def _set_timer(self, delay: float, callback: Any) -> None:
        if self._timer is not None:
            self._timer.cancel()
        self._timer = self._loop.call_later(delay, callback)


#: A staged send (``_StagedConnection``): its Commit, what ``ChatService.send_begun`` gave (to
#: finish it with), the request, the bytes its frame counts against the pipeline's bounds. Or a
#: reply that waits for the sends before it: (None, None, the reply, 0); the reply _END ends the
#: connection instead.
_Staged = tuple[Any, Any, Any, int]
_END = object()


class _StagedConnection(_ServerConnection):
    """A connection to a service whose store queues a send at once and has it wait for a
    group commit on a ``Commit`` (``SqliteStore.add_message_future``; not a Future): SENDs are
    driven with no coroutine at all (issue 10: ``_serve`` and ``Continuation`` were ~1.5 us
    of the ~10 us a durable send costs the server; then a stepper of ``ChatService.send``).

    ``_pipeline`` calls ``ChatService.send_begun``, which checks the send, queues its write
    and gives the write's Commit; that takes ``_send_committed`` as its ``wake_directly``.
    The writer calls it once the group holding the send is committed (Rule 9: the reply
    leaves only after it), once for a run of this connection's sends in the group, and it
    calls ``ChatService.send_stored`` (the pushes, the result) and writes the SENT of each.
    A connection's sends are queued in request order and a group's writes are woken in
    queue order, so ``_staged`` is answered from its head; a reply that did not wait (a
    request error) goes behind the staged sends in ``_staged``.
    A connection that closes leaves its staged sends to finish: they are stored and pushed,
    and their replies are not written.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self._staged: deque[_Staged] = deque()

    def _pipeline(self, event: Any, size: int) -> None:
        staged = self._staged
        if not staged:  # (a first SEND in flight pins what one request always did: not counted)
            size = 0
        elif not self._pipelined.admits(size, len(staged)):  # (the bounds' one copy)
            self._block(self._after_sends(event))
            return
        reply: Any
        try:
            begun = self._service.send_begun(self._session, event.recipients, event.body)
            if not isinstance(begun, tuple):  # (the store did not wait after all)
                reply = _sent_of(event.request_id, begun)
            else:
                commit: Any = begun[0]
                if getattr(commit, "queued", False):  # (waits for its group: core.sqlite_writer)
                    # (bound per send: a bound method kept on self is a reference cycle, and
                    # a closed connection must be freed by its reference count: test_gc_policy)
                    commit.wake_directly = self._send_committed
                    staged.append((commit, begun, event, size))
                    self._pipelined.bytes += size
                    return
                if commit.done():  # (answered at once: its commit went alone)
                    stored = self._service.send_stored(begun, commit.result())
                    reply = _sent_of(event.request_id, stored)
                else:  # (a send that waits for something else: the store says it won't)
                    log.error("a send from %s waits for %r, not a commit", self._peer, commit)
                    reply = _END
        except Exception as exc:  # (a request error)
            reply = self._reply_for(event, exc)
        if size:
            self._guard.give_back_inbound(size)
        if staged:  # (its reply goes after theirs)
            staged.append((None, None, reply, 0))
        else:
            self._answer(reply, now=True)

    def _send_committed(self, commit: Any) -> None:
        """The writer committed the group holding the oldest staged sends, up to ``commit``
        (it wakes a run of one connection's sends with one call, with the run's last:
        core.sqlite_writer's ``Commit``): finish them, and the replies that waited behind
        them, in order."""
        staged = self._staged
        service = self._service
        pipelined = self._pipelined
        guard = self._guard
        reply: Any
        try:
            while True:
                if not staged:
                    raise RuntimeError(f"a commit woke {commit!r}, not a staged send")
                first, begun, event, size = staged.popleft()
                if first is None:  # (a reply that waited for the send before it: its 3rd item)
                    self._answer(event, now=False)
                    continue
                if size:
                    pipelined.bytes -= size
                    guard.give_back_inbound(size)
                try:
                    if first.queued:  # (Commit.result() written out: a Python call less)
                        raise RuntimeError(f"{first!r} was woken before its commit")
                    added = first.outcome
                    if first.failed:  # (its group was rolled back: WriteFailed)
                        raise added
                    reply = _sent_of(event.request_id, service.send_stored(begun, added))
                except Exception as exc:
                    reply = self._reply_for(event, exc)
                if reply is _END or self._closing:
                    self._answer(reply, now=False)
                else:  # (_answer inlined: the replies of one commit leave together)
                    self._outbox.write(self._codec.send(reply))
                    if self._session.state is _CLOSED:
                        self._session_ended(notice=True)
                if first is commit:
                    break
            while staged and staged[0][0] is None:  # (replies that waited for this one)
                self._answer(staged.popleft()[2], now=False)
        except Exception:  # (the writer calls us on its own stack: nothing may reach it)
            log.exception("connection %s failed", self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")
        if not staged and self._drained is not None:
            drained, self._drained = self._drained, None
            if not drained.done():  # (a blocker cancelled while it waited)
                drained.set_result(None)


__all__ = ["OLD_DELETE", "CustomServer", "start_server"]
