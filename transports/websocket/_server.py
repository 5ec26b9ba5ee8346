"""The websocket server: a thin driver between the ``websockets`` library and ChatService.

Theory of operation (section numbers refer to CONTRACT.md)
  * The library does RFC 6455: the opening handshake (``_check_handshake`` refuses a wrong path
    or subprotocol with a readable HTTP error first), framing, masking, keepalive pings, the
    closing handshake. Not the closes for input that ends a connection (section 11.1): the
    library would close at once, and lose the replies of the sends in flight before it. A text
    message is read undecoded and checked here (1007, ``_take`` and ``run``, the one UTF-8
    decode either way), a binary message is caught as it is parsed (1003,
    ``_StallWatch.process_event``), and a message over the size limit where the library fails
    on it (1009, ``_Protocol.fail``): the server reads nothing more (``end_input``), answers
    every request before it, and only then closes (``_Connection._end_input``).
  * One :class:`_Connection` per client, one session per connection. A text message that
    arrives while nothing holds it up (no request that waits before it, nothing queued for the
    handler) is handled on the stack that read it (``_Connection._take``, from the library's
    ``process_event``): started eagerly (transports/_eager.py), it usually answers before the
    read callback returns, without the library's queue, the future that wakes the handler, or
    the loop turn and task step that follow (issue 10: ~16,000 instructions of the ~63,000 a
    lone send cost more than a ws_echo round trip, callgrind; the rest is the request's own
    work: JSON, the service, the reply). The others go to the library's queue, whose read
    limit (MAX_QUEUE) then holds, and the handler (``run``) takes them in order.
  * A request that waits (a SQLite group commit, a paused socket) finishes as a
    ``Continuation``, and holds up every message behind it until it is done (``_block``),
    so replies keep request order (section 7) and a client that pipelines is read no faster
    than it is served. Except sends, which are pipelined (issue 10, ``_handle``, as the custom
    server's ``_pipeline``; the bookkeeping is transports/_pipeline.py): a send that waits for
    the store's commit lets the next message in when that is a send too, so a connection's
    sends share one transaction instead of one each. Their store calls start in request
    order, so the store keeps it (message ids increase with it); each reply waits for the one
    before it (``_serve``'s ``after``), so replies keep it too, and the replies of one commit
    leave in one write (``_write_soon``). Any other request waits until the sends before it
    are answered (``_after_sends``). Bounded per connection by ``sends_in_flight`` and
    ``send_bytes_in_flight`` (the messages' bytes, also counted against the server-wide
    inbound budget, ``Guard``); a send past either waits like any other request.
  * The subprotocol the handshake selected fixes the connection's version (section 2):
    ``wirechat.v2.2.json``, ``wirechat.v2.json`` or ``wirechat.v1.json``, the first offered in
    that order. The codec takes the version, so a v1 connection gets exactly v1's messages,
    and the error table the subprotocol, so only a 2.2 connection meets OVERLOADED (a busy
    refusal is LIMIT_EXCEEDED to the others, as before; section 14).
  * A successful signup/login starts one pump task draining the session into pushes: on a
    v2 connection ``session.events()`` (deliveries and the notices of Rules 22-24), on a v1
    connection ``session.deliveries()`` (deliveries only). The login's reply is written
    before the pump can run: ``send`` writes synchronously and only then may wait for the
    socket to drain.
  * Slow consumers: past WRITE_LIMIT unread bytes the library pauses our writers. If the
    output stays paused for STALL_TIMEOUT (:class:`_StallWatch`, one timer per pause, nothing
    per message), the client is too slow: its session ends (its messages stay pending) and
    the connection is dropped. The service also ends a session whose queue of undelivered
    pushes overflows (the SLOW_CONSUMER notice, then close 4003).
  * Bounds (section 2.1): the handshake counts the client's IP against the server's Guard
    (connections in all and per address, shared with every transport) and refuses with HTTP
    503 and the Guard's sentence when a cap is hit; the admission is given back when the TCP
    connection ends (``_StallWatch.connection_lost``), however it ends. A connection with no
    logged-in session for the idle timeout (from the handshake or its logout) is closed with
    1008. The kernel's send buffer is set to ``socket_send_buffer`` so a reader that stopped is
    seen by the stall timer instead of hiding megabytes in the kernel.
  * However a session ends, ``_end`` decides the rest in one place (section 9): the notice
    (``session_ended``) if the client did not cause the end itself, then a close frame with
    the code of ``SESSION_ENDS``. Nothing a client sends reaches beyond its own connection:
    every error is answered or ends that connection, and its tasks end with it.
"""

from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import socket
from collections.abc import AsyncGenerator, Callable, Coroutine, Generator
from typing import Any, cast

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.frames import DATA_OPCODES, CloseCode, Frame, Opcode
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.server import ServerProtocol
from websockets.typing import Subprotocol

from core import requests as rq
from core.errors import ChatError
from core.service import ChatService
from core.session import Session
from core.session import State as SessionState
from core.types import CloseReason, Delivery, SessionEvent
from transports._eager import FINISHED, Continuation, start_eagerly
from transports._guard import Guard, peer_host, spread
from transports._pipeline import SendPipeline
from transports._tls import ServerTls
from transports.websocket._messages import (
    INTERNAL,
    MAX_MESSAGE_BYTES,
    PATH,
    SESSION_ENDS,
    SUBPROTOCOL_V1,
    SUBPROTOCOLS,
    VERSIONS,
    Close,
    Malformed,
    code_for_error,
    decode_request,
    encode_delivery,
    encode_error,
    encode_event,
    encode_reply,
    encode_session_ended,
)

log = logging.getLogger(__name__)
#: The library logs every connection's opening and closing at INFO: too chatty for a server with
#: thousands of clients. Its warnings and errors still show.
_library_log = logging.getLogger(f"{__name__}.library")
_library_log.setLevel(logging.WARNING)

#: Seconds our output may stay paused (WRITE_LIMIT bytes unread, no progress below it) before
#: the client is a slow consumer. Generous: a phone in a tunnel recovers in seconds.
STALL_TIMEOUT = 30.0
#: Unread bytes in one connection's socket buffer before a writer waits (the library's default
#: is 32 KiB; this is four maximal deliveries, like the custom transport's HIGH_WATER).
WRITE_LIMIT = 256 * 1024
#: Frames the library buffers from one client before it stops reading that socket: behind a
#: request that waits, the rest are handled one at a time, so a deeper queue only holds
#: memory. Its default (16) times MAX_MESSAGE_BYTES would let one client park 7 MB in the
#: server; 8 bounds it to 3.5 MB and still keeps a pipelining client's next requests at hand.
MAX_QUEUE = 8
#: Keepalive (section 10): the server pings this often and closes (1011) when no pong comes
#: within PING_TIMEOUT. The library's defaults; a browser answers pings by itself.
PING_INTERVAL = 20.0
PING_TIMEOUT = 20.0
#: Seconds for the opening handshake (slowloris) and for the closing handshake.
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0
#: The Retry-After (seconds) of a 503 refusal when a connection cap is hit: connections come
#: and go by the second, and an idle one is closed within the idle timeout.
RETRY_AFTER = 5

#: Read on the path of every message: an enum member read from its class goes through the
#: enum's ``__getattr__`` hook on CPython 3.11 (~850 instructions), a global is a dict lookup.
_TEXT = Opcode.TEXT
_BINARY = Opcode.BINARY
_OPEN = State.OPEN
_CLOSED = SessionState.CLOSED


class WebSocketServer:
    """What start_server returns: ``address`` is (host, port); ``await close()`` stops it."""

    def __init__(self, service: ChatService, guard: Guard | None = None) -> None:
        self.service = service
        self.guard = guard or Guard()
        self.address: tuple[str, int] = ("", 0)
        self._server: Server | None = None
        self._connections: set[_Connection] = set()

    def _process_request(self, ws: ServerConnection, request: Request) -> Response | None:
        """The handshake's checks (section 2), then admission by the Guard (section 2.1)."""
        refused = _check_handshake(ws, request)
        if refused is not None:
            return refused
        watch = cast(_StallWatch, ws)
        limits = self.guard.limits
        watch.stall_timeout = limits.stall_timeout
        ip = peer_host(ws.remote_address)
        refusal = self.guard.admit(ip)
        if refusal is not None:
            response = ws.respond(http.HTTPStatus.SERVICE_UNAVAILABLE, f"{refusal}\n")
            response.headers["Retry-After"] = str(RETRY_AFTER)
            return response
        watch.admitted = (self.guard, ip)  # given back in connection_lost
        self.guard.waiting(watch, ip)  # (no session yet: may be evicted when the server is full)
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        # (each connection's idle timeout is its own, the setting give or take
        # timeout_spread: connections opened in one burst do not all time out in one turn)
        limits = self.guard.limits
        idle_timeout = limits.idle_timeout * spread(limits.timeout_spread)
        connection = _Connection(
            self.service, cast(_StallWatch, ws), self.guard, idle_timeout=idle_timeout
        )
        self._connections.add(connection)
        try:
            await connection.run()
        finally:
            self._connections.discard(connection)

    async def close(self) -> None:
        """Tell every client (a SHUTDOWN notice, close 1001), then stop listening."""
        connections = list(self._connections)
        if connections:
            await asyncio.wait(
                [asyncio.ensure_future(c.shutdown()) for c in connections],
                timeout=CLOSE_TIMEOUT + 1,
            )
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


def _check_handshake(ws: ServerConnection, request: Request) -> Response | None:
    """Refuse, in words, an upgrade to another path or without our subprotocol (section 2)."""
    path = request.path.partition("?")[0]
    if path != PATH:
        return ws.respond(
            http.HTTPStatus.NOT_FOUND, f"wirechat speaks WebSocket at {PATH}, not at {path}\n"
        )
    if "websocket" not in request.headers.get("Upgrade", "").lower():
        return None  # a plain HTTP request: the library answers 426 Upgrade Required
    offered = [
        p.strip()
        for value in request.headers.get_all("Sec-WebSocket-Protocol")
        for p in value.split(",")
    ]
    if not any(p in SUBPROTOCOLS for p in offered):
        return ws.respond(
            http.HTTPStatus.BAD_REQUEST,
            f"offer the subprotocol {' or '.join(SUBPROTOCOLS)} (Sec-WebSocket-Protocol); "
            f"offered: {', '.join(offered) or 'none'}\n",
        )
    return None


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    guard: Guard | None = None,
    tls: ServerTls | None = None,
) -> WebSocketServer:
    """Listen on (host, port) (port 0: any) and serve ``service`` over WebSocket + JSON.
    ``guard`` (one per server process) counts connections against the caps and supplies the
    idle, stall and send-buffer bounds; without one this listener makes its own.
    ``tls``: serve ``wss://`` (the TLS handshake is bounded by OPEN_TIMEOUT too)."""
    server = WebSocketServer(service, guard)
    limits = server.guard.limits
    server._server = await serve(
        server._handle,
        host,
        port,
        subprotocols=[Subprotocol(p) for p in SUBPROTOCOLS],  # (in order of preference)
        process_request=server._process_request,
        compression=None,  # no permessage-deflate: section 3
        max_size=MAX_MESSAGE_BYTES,
        max_queue=MAX_QUEUE,
        write_limit=WRITE_LIMIT,
        ping_interval=PING_INTERVAL,
        ping_timeout=PING_TIMEOUT,
        open_timeout=OPEN_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
        server_header=None,
        logger=_library_log,
        create_connection=_StallWatch,
        # (the loop accepts every queued connection at once here, before any is counted: no
        # more than the cap's headroom for that, ServerLimits.burst_backlog)
        backlog=limits.burst_backlog,
        ssl=tls.context() if tls is not None else None,
        ssl_handshake_timeout=OPEN_TIMEOUT if tls is not None else None,
    )
    for sock in server._server.sockets:  # inherited by accepted sockets (Linux)
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, limits.socket_send_buffer)
    bound = server._server.sockets[0].getsockname()
    server.address = (bound[0], bound[1])
    return server


class _StallWatch(ServerConnection):
    """The library's connection, plus a timer while its writers are paused (flow control), and
    the Guard admission it holds until the TCP connection is lost."""

    on_stall: Callable[[], None] | None = None  # the output stayed paused for stall_timeout
    #: The Guard evicts this connection (no session, the server is full): the handler closes
    #: it with the reason, or says it cannot go now (a request in progress: False).
    on_evict: Callable[[float], bool] | None = None
    stall_timeout: float = STALL_TIMEOUT
    admitted: tuple[Guard, str | None] | None = None
    _stall_timer: asyncio.TimerHandle | None = None
    #: The handler takes a complete text message here, on the stack that read it: True when
    #: it did; otherwise (busy, or no handler yet) the library queues the message as usual.
    on_text: Callable[[bytes | bytearray | memoryview], bool] | None = None
    #: Messages handed to the library's queue that the handler has not taken out yet.
    unread: int = 0
    #: The client sent what ends the connection (``end_input``): its close code and reason.
    input_end: tuple[int, str] | None = None
    #: Data frames parsed after that input (in the same read) are ignored.
    ignoring: bool = False
    #: The handler acts on ``input_end`` (once the messages before it are answered).
    on_input_end: Callable[[], None] | None = None

    def __init__(self, protocol: ServerProtocol, *args: Any, **kwargs: Any) -> None:
        # The library's protocol, made anew as a _Protocol with the same settings: one that
        # leaves the close for a message over the size limit to the handler. (Made anew: an
        # attribute added to the library's instance, or its ``__class__`` set, makes every
        # attribute read of the protocol slower on CPython 3.11, on the path of every message:
        # ~470 and ~10,000 instructions a send, callgrind.)
        ours = _Protocol(
            self,
            origins=protocol.origins,
            extensions=protocol.available_extensions,
            subprotocols=protocol.available_subprotocols,
            max_size=(protocol.max_message_size, protocol.max_fragment_size),
            logger=protocol.logger,
        )
        super().__init__(ours, *args, **kwargs)

    def process_event(self, event: Any) -> None:
        if type(event) is Frame:
            opcode = event.opcode
            if opcode is _TEXT and event.fin:
                take = self.on_text
                if take is not None and take(event.data):
                    return
                self.unread += 1  # (a whole message: one more to read)
            elif opcode in DATA_OPCODES:  # (a fragment, or a binary message)
                if self.ignoring:
                    return  # (parsed after the input that ended the connection: ignored)
                if opcode is _BINARY:
                    why = f"binary frames are not part of {self.subprotocol}; send JSON text"
                    self.end_input(Close.UNSUPPORTED_DATA, why)
                    return
                if event.fin:
                    self.unread += 1
        super().process_event(event)

    def end_input(self, code: int, why: str, *, parsed: bool = True) -> None:
        """The client sent what ends the connection (section 11): read nothing more (the
        frames parsed after it are ignored, the rest of the stream is dropped), and close with
        ``code`` and ``why`` once the handler has answered every message before it (the
        library would close at once, and lose the replies of the sends still in flight).
        ``parsed``: this comes from a parsed event, in order; else from within the parse,
        which stops there, before the events it parsed are handed over (all before it)."""
        if self.input_end is not None:
            return
        self.input_end = (code, why)
        if parsed:
            self.ignoring = True
            self.on_text = _ignore
        # Parse nothing more: what comes is dropped (the library's ``discard``, which a server
        # runs only once its close is sent).
        protocol = self.protocol
        protocol.parser = _drop(protocol)
        next(protocol.parser)
        if self.on_input_end is not None:
            self.on_input_end()

    def fail_now(self) -> None:
        """The close that ``end_input`` put off: a close frame, then the end of the stream
        (what the library does on input it cannot read)."""
        assert self.input_end is not None
        ServerProtocol.fail(self.protocol, *self.input_end)

    def pause_writing(self) -> None:
        super().pause_writing()
        if self._stall_timer is None:
            self._stall_timer = self.loop.call_later(self.stall_timeout, self._stalled)

    def resume_writing(self) -> None:
        super().resume_writing()
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None

    def connection_lost(self, exc: Exception | None) -> None:
        cast(_Protocol, self.protocol).watch = None  # (a reference cycle no more)
        if self._stall_timer is not None:
            self._stall_timer.cancel()
            self._stall_timer = None
        self._give_place_back()
        super().connection_lost(exc)

    def _give_place_back(self) -> None:
        if self.admitted is not None:
            guard, ip = self.admitted
            self.admitted = None
            guard.settled(self)
            guard.release(ip)

    def evict(self, waited: float) -> bool:
        """``Guard.admit`` found the server full and this connection has waited longest
        without a session (``transports._guard.Waiting``): close it with the reason (before
        the handler runs: drop it) and give its place back now."""
        if self.on_evict is None:
            self.transport.abort()
        elif not self.on_evict(waited):
            return False
        self._give_place_back()
        return True

    def settled(self, waiting: bool) -> None:
        """The handler's session is (False) or is no longer (True) logged in."""
        if self.admitted is not None:
            guard, ip = self.admitted
            if waiting:
                guard.waiting(self, ip)
            else:
                guard.settled(self)

    def _stalled(self) -> None:
        self._stall_timer = None
        if self.on_stall is not None:
            self.on_stall()


def _ignore(data: bytes | bytearray | memoryview) -> bool:
    return True


def _not_utf8(exc: UnicodeDecodeError) -> str:
    """The close reason for a text message that is not UTF-8, in words."""
    return f"a text message was not UTF-8 ({exc.reason} at byte {exc.start}); send UTF-8 JSON"


class _Protocol(ServerProtocol):
    """The library's sans-I/O protocol, but for the close of a message over the size limit."""

    def __init__(self, watch: _StallWatch, **settings: Any) -> None:
        super().__init__(**settings)
        self.watch: _StallWatch | None = watch

    def fail(self, code: int, reason: str = "") -> None:
        watch = self.watch
        if code == CloseCode.MESSAGE_TOO_BIG and self.state is _OPEN and watch is not None:
            why = f"a message was over {MAX_MESSAGE_BYTES} bytes, the limit; nothing after it read"
            watch.end_input(Close.TOO_BIG, why, parsed=False)  # (the parse stops there)
            return
        super().fail(code, reason)


def _drop(protocol: ServerProtocol) -> Generator[None]:
    """A parser that drops what comes (``_StallWatch.end_input``)."""
    reader = protocol.reader
    while not (yield from reader.at_eof()):
        reader.discard()
    # The client hung up first: what the library does at an unexpected end of stream.
    ServerProtocol.fail(protocol, CloseCode.ABNORMAL_CLOSURE, "unexpected end of stream")
    yield


class _Connection:
    """One client: its session, the request loop and the delivery pump."""

    def __init__(
        self, service: ChatService, ws: _StallWatch, guard: Guard, *, idle_timeout: float
    ) -> None:
        self._service = service
        self._ws = ws
        self._guard = guard
        ws.on_stall = self._stalled
        ws.on_evict = self._evicted
        self._session: Session = service.open_session(peer_host(ws.remote_address))
        self._idle_timeout = idle_timeout
        self._idle_timer: asyncio.TimerHandle | None = None
        self._closer: asyncio.Task[None] | None = None  # a close begun by a timer or a bug
        self._version = VERSIONS.get(ws.subprotocol or "", 1)  # (the handshake selected one)
        #: Which error codes it knows: OVERLOADED only on wirechat.v2.2.json (section 14).
        self._subprotocol = ws.subprotocol or SUBPROTOCOL_V1
        self._pump: asyncio.Task[None] | None = None
        self._epoch = 0  # bumps at each login/logout: a pump of an older one sends nothing
        self._ending = False  # the last message is decided: nothing more is sent or handled
        self._noticed = False  # the session_ended notice is out
        #: A request that waits and holds up every message behind it (``_block``).
        self._blocker: Continuation | None = None
        #: Sends in flight together, each waiting for the commit that holds it (``_handle``).
        self._pipeline = SendPipeline(guard, self._send_failed)
        self._flushing = False  # replies wait in the protocol for ``_flush`` (``_write_soon``)
        #: The close after input that ends the connection (``_StallWatch.end_input``).
        self._finishing: asyncio.Task[None] | None = None
        ws.on_input_end = self._input_ended
        if ws.input_end is None:
            ws.on_text = self._take
        else:  # (it came with the handshake, before this handler)
            self._input_ended()

    async def run(self) -> None:
        """Serve the messages the library queued, in order, until the connection closes;
        then end the session."""
        ws = self._ws
        recv = ws.recv
        self._watch_idle()
        try:
            while True:
                # (undecoded: the library would close with 1007 at once on text that is not
                # UTF-8, before the replies of the sends in flight; a binary message never
                # comes here, ``_StallWatch.process_event``)
                data = await recv(False)
                try:
                    if self._blocker is not None:  # (a request before it: its reply first)
                        await asyncio.wait((self._blocker,))
                    if self._ending:
                        continue  # (the close is under way: read on until the library ends it)
                    try:
                        text = str(data, "utf-8")
                    except UnicodeDecodeError as exc:
                        await self._pipeline.answered()
                        await self._close(Close.INVALID_TEXT, _not_utf8(exc))
                    else:
                        self._handle(text, len(data) if self._pipeline.sends else 0)
                finally:
                    # (counted out only now: while it is in hand, _take leaves the messages
                    # that follow it to the queue, behind it)
                    ws.unread -= 1
                    if ws.input_end is not None and not ws.unread:
                        self._finish_input()  # (the last message before the end is in hand)
        except ConnectionClosed:
            pass  # (the library answered a protocol error or an oversized message itself)
        except Exception:  # a bug of ours: log it, never let it reach other connections
            log.exception("connection %s failed", ws.remote_address)
            await self._close(Close.INTERNAL, "internal server error")
        finally:
            ws.on_text = None  # (a message still read while closing goes nowhere)
            if self._blocker is not None:
                await asyncio.wait((self._blocker,))
            await self._pipeline.answered()
            self._unwatch_idle()
            self._stop_pump()
            self._service.close_session(self._session)

    def _take(self, data: bytes | bytearray | memoryview) -> bool:
        """A text message, on the stack that read it (``_StallWatch.process_event``): handled
        now when nothing holds it up (False: the library queues it for ``run``). Sends in
        flight do not: a send is pipelined behind them, anything else waits for them."""
        if self._blocker is not None or self._ending or self._ws.unread:
            return False
        try:
            text = str(data, "utf-8")
        except UnicodeDecodeError as exc:  # (closed once the sends in flight are answered)
            self._ws.end_input(Close.INVALID_TEXT, _not_utf8(exc))
            return True
        try:
            self._handle(text, len(data))
        except Exception:  # a bug of ours: as ``run`` does, without reaching the library
            log.exception("connection %s failed", self._ws.remote_address)
            self._fail()
        return True

    def _handle(self, text: str, size: int) -> None:
        """Start serving one text message (``size`` bytes) on the caller's stack; it goes on
        as a continuation if it waits. A send is pipelined: started at once, behind the sends
        in flight, unless past this connection's bounds (``ServerLimits.sends_in_flight``,
        ``send_bytes_in_flight``, the server's inbound budget). Anything else, and a send past
        the bounds, is served once the sends before it are answered, and holds up every
        message behind it until it is done (``_block``)."""
        try:
            rid, request = decode_request(text, self._version)
        except Malformed as exc:
            self._block(self._refuse(exc))
            return
        pipeline = self._pipeline
        if type(request) is not rq.Send:
            if pipeline.sends:
                self._block(self._after_sends(rid, request))
            else:
                self._block(self._serve(rid, request))
            return
        if not pipeline.sends:
            size = 0  # (a first send in flight pins what one request always did: not counted)
        elif not pipeline.admits(size):
            self._block(self._after_sends(rid, request))
            return
        # (``start_eagerly`` written out: a Python call less, and only a send that waits goes
        # on as a continuation, in the pipeline until it ends)
        coro = self._serve(rid, request, pipeline.last)
        first = next(coro.__await__(), FINISHED)
        if first is not FINISHED:
            pipeline.add(coro, first, size)
        elif size:  # (answered at once: the store did not wait)
            self._guard.give_back_inbound(size)

    def _send_failed(self, error: BaseException) -> None:
        log.error("send from %s failed", self._ws.remote_address, exc_info=error)
        self._fail()

    def _block(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run ``coro`` now; if it has to wait, it holds up every message behind it (``_take``
        leaves them to the library's queue, and ``run`` waits for it before the next)."""
        self._blocker = start_eagerly(coro, self._unblocked)

    def _unblocked(self, task: Continuation) -> None:
        if task is self._blocker:
            self._blocker = None
        if not task.cancelled() and task.exception() is not None:  # (a bug of ours)
            log.error("request from %s failed", self._ws.remote_address, exc_info=task.exception())
            self._fail()

    async def _after_sends(self, rid: int, request: rq.Request[Any]) -> None:
        """Serve ``request`` once the sends before it are answered (not once the connection's
        last message is decided meanwhile: section 9.2)."""
        await self._pipeline.answered()
        if not self._ending:
            await self._serve(rid, request)

    async def _refuse(self, exc: Malformed) -> None:
        """A message that is no request: its error, after the replies before it."""
        await self._pipeline.answered()
        with contextlib.suppress(ConnectionClosed):
            await self._send(encode_error(exc.request_id, exc.code, exc.message))

    def _fail(self) -> None:
        """A bug of ours in a request that ran without ``run``: what ``run`` does then."""
        if self._closer is None or self._closer.done():
            closing = self._close(Close.INTERNAL, "internal server error")
            self._closer = asyncio.create_task(closing, name="websocket-failed")

    # -- input that ends the connection (section 11) ------------------------------------------
    def _input_ended(self) -> None:
        """The client sent what ends the connection (``_StallWatch.end_input``): the close
        goes once the messages read before it are answered. Those of the read that brought
        it are taken after it is seen (``_Protocol.fail`` runs within the parse): decided on
        the next loop turn, or by ``run`` when it has taken the last queued one."""
        self._ws.loop.call_soon(self._finish_input)

    def _finish_input(self) -> None:
        if self._ws.unread or self._finishing is not None:
            return  # (``run`` still has messages before it to serve)
        self._finishing = asyncio.create_task(self._end_input(), name="websocket-input-end")

    async def _end_input(self) -> None:
        """Answer every request before the input that ended the connection, then close with
        its code and reason (unless something else closes first: a shutdown, a session
        that ended)."""
        while self._blocker is not None:
            await asyncio.wait((self._blocker,))
        await self._pipeline.answered()
        ws = self._ws
        if self._ending or ws.input_end is None:
            return
        self._ending = True
        self._stop_pump()
        with contextlib.suppress(ConnectionClosed):  # (bounded by close_timeout)
            async with ws.send_context():
                ws.fail_now()

    # -- no login, no connection (section 2.1) ----------------------------------------------
    def _watch_idle(self) -> None:
        """Start the no-login timer (at the handshake and at each logout); the Guard may
        evict the connection from now on."""
        if self._idle_timer is None and not self._ending:
            self._idle_timer = self._ws.loop.call_later(self._idle_timeout, self._idled)
            self._ws.settled(waiting=True)

    def _unwatch_idle(self) -> None:
        self._ws.settled(waiting=False)  # (logged in, or ending: never evicted)
        if self._idle_timer is not None:
            self._idle_timer.cancel()
            self._idle_timer = None

    def _evicted(self, waited: float) -> bool:
        """The server is full and this connection has waited longest without a session:
        close 1008 with the reason, at most CLOSE_TIMEOUT later dropped (``_close``)."""
        if (self._blocker is not None or self._pipeline.sends) and not self._ending:
            return False
        self._unwatch_idle()
        if not self._ending:
            why = f"no login within {waited:.0f} s while the server is full; reconnect"
            closing = self._close(Close.IDLE, why)
            self._closer = asyncio.create_task(closing, name="websocket-evicted")
        return True

    def _idled(self) -> None:
        self._idle_timer = None
        if self._session.active or self._ending:
            return
        why = f"no login within {self._idle_timeout:.3g} s"
        self._closer = asyncio.create_task(self._close(Close.IDLE, why), name="websocket-idle")

    async def shutdown(self) -> None:
        """The server is stopping: the SHUTDOWN notice, then close 1001."""
        if not self._session.closed:
            self._service.close_session(self._session, CloseReason.SHUTDOWN)
        await self._end(notice=True)

    # -- requests ----------------------------------------------------------------------------
    async def _serve(
        self, rid: int, request: rq.Request[Any], after: Continuation | None = None
    ) -> None:
        """Handle one request: call the service, send the reply (once ``after``, a pipelined
        send before it, has sent its own), follow the session's end."""
        reply: str | None
        try:
            if type(request) is rq.Send:  # (the hot path: one coroutine and a match less)
                send_now = self._service.send_now  # (a store that never waits: no coroutine)
                if send_now is not None:
                    result = send_now(self._session, request.recipients, request.body)
                else:
                    result = await self._service.send(
                        self._session, request.recipients, request.body
                    )
            else:
                result = await self._call(request)
        except ChatError as exc:
            reply = encode_error(rid, code_for_error(exc, self._subprotocol), str(exc))
        except Exception:
            log.exception("%s from %s failed", type(request).__name__, self._ws.remote_address)
            if after is not None:  # (the replies before it go first)
                if not after.done():
                    await asyncio.wait((after,))
                if self._ending:
                    return  # (a reply before it was the last message: section 9.2)
            self._ending = True
            with contextlib.suppress(ConnectionClosed):
                await self._send(encode_error(rid, INTERNAL, "internal server error"), last=True)
            await self._close(Close.INTERNAL, "internal server error")
            return
        else:
            reply = encode_reply(rid, request, result, self._version)
        if after is not None:
            if not after.done():
                await asyncio.wait((after,))
            if self._ending:
                return  # (a reply before it was the last message: section 9.2)
        if self._session.state is _CLOSED:
            # The session ended during (or before) this request: its reply is the last message
            # but a notice. Decided before any await, so the pump sends nothing after it.
            self._ending = True
            self._stop_pump()
        try:
            # (sent even when ending: the last message; see _send. Pipelined sends: the
            # replies of one commit leave together, ``_write_soon``)
            if reply is not None and not (
                self._write_soon(reply) if self._pipeline.sends else self._write_at_once(reply)
            ):
                await self._write(reply)
            if self._session.state is _CLOSED:
                # After a failed signup/login or the client's own deletion the reply said
                # why; any other end (deleted elsewhere, shutdown) is told by the notice.
                caused = isinstance(request, rq.Signup | rq.Login | rq.Resume | rq.DeleteAccount)
                await self._end(notice=not caused)
        except ConnectionClosed:
            pass  # (the library ends the handler's read too)

    async def _call(self, request: rq.Request[Any]) -> Any:
        service, session = self._service, self._session
        match request:
            case rq.Send(recipients, body):
                return await service.send(session, recipients, body)
            case rq.Ack(ids):
                return await service.ack(session, ids)
            case rq.Signup(username, password):
                result = await service.signup(session, username, password)
                self._unwatch_idle()
                self._start_pump()
                return result
            case rq.Login(username, password):
                result = await service.login(session, username, password)
                self._unwatch_idle()
                self._start_pump()
                return result
            case rq.Resume(token):
                result = await service.resume(session, token)
                self._unwatch_idle()
                self._start_pump()
                return result
            case rq.ChangePassword(old_password, new_password, end_other_sessions):
                return await service.change_password(
                    session, old_password, new_password, end_other_sessions
                )
            case rq.Logout():
                await service.logout(session)
                self._epoch += 1  # no deliver of the ended login may follow the reply
                self._watch_idle()
                return None
            case rq.ListAccounts(pattern, after, limit):  # (refused while the loop runs behind)
                return await service.list_accounts(session, pattern, after, limit)
            case rq.DeleteAccount(username, password):
                # no password (a client from before 2.1): AUTH_FAILED, nothing deleted
                return await service.delete_account(session, username, password)
            case rq.ListConversations(before_id, limit):
                return await service.list_conversations(session, before_id, limit)
            case rq.ReadHistory(participants, before_id, limit, conversation_id):
                return await service.read_history(
                    session, participants, before_id, limit, conversation_id
                )
            case rq.MarkRead(conversation_id, up_to_id):
                return await service.mark_read(session, conversation_id, up_to_id)
            case rq.DeleteMessages(ids, for_everyone):
                return await service.delete_messages(session, ids, for_everyone)
        raise TypeError(f"no handler for {request!r}")

    # -- deliveries ----------------------------------------------------------------------------
    def _start_pump(self) -> None:
        self._epoch += 1
        self._stop_pump()
        self._pump = asyncio.create_task(self._run_pump(self._epoch), name="websocket-pump")

    def _stop_pump(self) -> None:
        pump, self._pump = self._pump, None
        if pump is not None and pump is not asyncio.current_task():
            pump.cancel()

    async def _run_pump(self, epoch: int) -> None:
        session = self._session
        v2 = self._version >= 2
        try:
            events = cast(
                AsyncGenerator[SessionEvent, None],
                session.events() if v2 else session.deliveries(),
            )
            async with contextlib.aclosing(events):
                async for event in events:
                    if epoch != self._epoch or self._ending:
                        return
                    if type(event) is Delivery:
                        await self._send(encode_delivery(event, self._version))
                    elif v2:
                        for text in encode_event(event):
                            await self._send(text)
            if session.closed and epoch == self._epoch:
                await self._end(notice=True)  # deleted elsewhere, too slow, shutting down
        except ConnectionClosed:
            pass
        except Exception:
            log.exception("delivery to %s failed", self._ws.remote_address)
            await self._close(Close.INTERNAL, "internal server error")

    # -- output and ending ---------------------------------------------------------------------
    async def _send(self, text: str, *, last: bool = False) -> None:
        """Send one message (nothing more once the last one is decided, but that one)."""
        if not self._ending or last:
            await self._write(text)

    async def _write(self, text: str) -> None:
        """Send one message, also without a current task (``_take``): at once while the
        connection is open and its output not paused (``_write_at_once``, the common case).
        Paused, the library's send waits for the socket to drain. No longer open, the
        library's send waits for the closing handshake under ``asyncio.timeout``, which needs
        a task: it runs in one of its own, and raises ConnectionClosed as it would."""
        if self._write_at_once(text):
            return
        ws = self._ws
        if ws.protocol.state is not _OPEN:
            await asyncio.ensure_future(ws.send(text))
        else:
            await ws.send(text)

    def _write_at_once(self, text: str) -> bool:
        """Send one message now if the connection is open and its output not paused (False:
        nothing sent, ``_write`` waits). What the library's ``send`` does then, without its
        context manager and drain coroutine around it: the frame from the sans-IO protocol,
        written at once (issue 10, callgrind: ~22,000 instructions less per reply than
        ``send``); a plain call, so a reply costs no coroutine of ours either."""
        ws = self._ws
        if ws.protocol.state is not _OPEN or ws.paused or ws.send_in_progress is not None:
            return False
        ws.protocol.send_text(text.encode())
        try:
            ws.send_data()
        except Exception as exc:  # (what the library's send does then: drop the connection)
            ws.transport.abort()
            raise ConnectionClosed(None, None) from exc
        return True

    def _write_soon(self, text: str) -> bool:
        """``_write_at_once``, but the frame leaves at the end of this loop turn, with every
        other written meanwhile: a commit wakes a connection's pipelined sends one after the
        other, and their replies then cost one system call instead of one each."""
        ws = self._ws
        if ws.protocol.state is not _OPEN or ws.paused or ws.send_in_progress is not None:
            return False
        ws.protocol.send_text(text.encode())
        if not self._flushing:
            self._flushing = True
            ws.loop.call_soon(self._flush)
        return True

    def _flush(self) -> None:
        """Write what ``_write_soon`` left in the protocol (unless another write took it)."""
        self._flushing = False
        ws = self._ws
        if ws.transport.is_closing():
            return  # (the connection is gone, or its close wrote them already)
        try:
            ws.send_data()
        except Exception:  # (what the library's send does then: drop the connection)
            ws.transport.abort()

    def _stalled(self) -> None:
        """Our output stayed unread for STALL_TIMEOUT: a slow consumer (section 9.4). It reads
        nothing, so a notice or close frame would wait too: the connection is dropped."""
        log.warning("%s reads too slowly; ending its session", self._ws.remote_address)
        if not self._session.closed:
            self._service.close_session(self._session, CloseReason.SLOW_CONSUMER)
        self._ending = True
        self._stop_pump()
        self._ws.transport.abort()

    async def _end(self, *, notice: bool) -> None:
        """The session has ended: its notice (unless the client caused the end itself, or was
        told already), then the close code of its reason (section 9)."""
        reason = self._session.close_reason
        code, close = SESSION_ENDS.get(reason, (None, Close.NORMAL)) if reason else (None, None)
        self._ending = True
        self._stop_pump()
        if notice and code is not None and reason is not None and not self._noticed:
            self._noticed = True
            with contextlib.suppress(ConnectionClosed, TimeoutError):
                # (wait_for, not asyncio.timeout: this may run without a task, see _take)
                await asyncio.wait_for(
                    self._write(encode_session_ended(code, reason.value)), CLOSE_TIMEOUT
                )
        await self._close(close or Close.NORMAL, reason.value if reason else "")

    async def _close(self, code: int, reason: str) -> None:
        """The close frame, and the closing handshake (bounded: the library's waits for the
        socket to drain are not, and a client that reads nothing never lets it drain)."""
        self._ending = True
        self._stop_pump()
        try:
            # (wait_for, not asyncio.timeout: this may run without a task, see _take)
            await asyncio.wait_for(self._ws.close(code, reason), CLOSE_TIMEOUT)
        except ConnectionClosed:
            pass
        except TimeoutError:
            self._ws.transport.abort()


__all__ = ["WebSocketServer", "start_server"]
