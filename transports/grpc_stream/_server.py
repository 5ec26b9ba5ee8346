"""The grpc-stream server: chat.proto's ``ChatStream.Connect`` on grpc.aio, around one ChatService.

Theory of operation (chat.proto, "The stream service", is the contract)
  * One Connect call is one session (:class:`_Stream`). The handler task is the *reader*: it
    reads a ClientMessage, calls the core, writes the reply, and only then reads the next one,
    so replies leave in request order and a request never overtakes the one before it.
  * While the session is logged in, a *pusher* task drains ``session.deliveries()`` onto the
    same call, or ``session.events()`` (deliveries and the notices of Rules 22-24) if the
    Signup/Login/Resume set ``notices`` (clients from before history did not, and get deliveries
    only). History messages <-> core values live in transports/grpc/_convert.py.
    grpc-core allows one outstanding write per call, so both writers take turns
    (``_Stream.turn``, a lock handed over in arrival order); the pusher of a login starts
    after its reply is written, so the LoginReply precedes the pending messages.
  * Errors become replies in one place (``_Stream.run``): the ErrorReason of the shared
    table (transports/grpc/_errors.py) and the sentence of the core error. When the session has
    ended (a failed Signup/Login/Resume, a deletion here or elsewhere, too slow, shutdown), the call
    ends with that table's status and ``wirechat-error`` trailer (``_Stream.end``), from
    whichever task notices first; the other one sees the call aborted and stops.
  * Backpressure: writes wait for HTTP/2 flow control. A client that stops reading stalls the
    pusher, the core's queue for the session fills, and the core ends it as a slow consumer
    (Rule 17); when the client reads again its stream ends with SLOW_CONSUMER. A stream still
    stuck writing to a client that never reads again is cancelled by the sweep (two sweeps
    after its session ended), so a dead reader cannot pin a task for ever.
  * Bounds (transports/grpc/_limits.py): a Connect is a session, admitted by the server's Guard
    for the client's IP (``context.peer()``) or refused with RESOURCE_EXHAUSTED (OVERLOADED)
    and the Guard's sentence; the admission is given back when the call ends. A stream with no
    logged-in session for the idle timeout (from its start or its logout) is ended
    (UNAUTHENTICATED, DISCONNECTED). While the server is overloaded a request that creates
    work is answered with an OVERLOADED error reply (the stream goes on). A write (reply or
    push) that makes no progress for the stall timeout ends the session as a slow consumer
    and cancels the call, so a client that never reads pins one message, not a queue.
  * The client half-closing (done writing) ends the session: every request read is answered,
    then the call ends with OK. The client cancelling the call (or the connection dying: the
    keepalive pings of ``SERVER_OPTIONS`` notice) cancels the handler task; its ``finally``
    closes the session, as a dropped TCP connection does.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, TypeAlias

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health

from core.errors import ChatError, SessionClosed
from core.service import ChatService
from core.session import Session, State
from core.types import CloseReason, LoginResult
from transports._guard import Guard, spread
from transports._tls import ServerTls
from transports.grpc import _convert as cv
from transports.grpc._errors import BY_NAME, Reason, closed_text, reason_for
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._limits import Admission, LoadMeter, peer_ip, server_options
from transports.grpc._services import add_health_and_reflection, add_service

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["ChatStream"].full_name  # wirechat.v1.ChatStream

#: Seconds close() lets streams get their SHUTDOWN status out before the server stops.
SHUTDOWN_GRACE = 1.0
#: Seconds between sweeps for streams stuck writing to a client that stopped reading after
#: its session ended; such a stream is cancelled at the second sweep that finds it.
SWEEP_INTERVAL = 10.0

Context: TypeAlias = "grpc.aio.ServicerContext"
ServerMessage = pb.ServerMessage
_REASON_VALUE: dict[str, int] = {name: pb.ErrorReason.Value(name) for name in BY_NAME}
_MALFORMED = BY_NAME["INVALID_ARGUMENT"]
_SHUTDOWN = BY_NAME["SHUTDOWN"]
_OVERLOADED = BY_NAME["OVERLOADED"]
_IDLE = BY_NAME["DISCONNECTED"]
#: Requests served however loaded the server is: each frees state rather than creating work.
_NEVER_SHED = frozenset({"ack", "logout", "delete_account"})
_EOF = grpc.aio.EOF
_ACTIVE, _CLOSED = State.ACTIVE, State.CLOSED


def _error(request_id: int, reason: Reason, text: str) -> pb.ServerMessage:
    return ServerMessage(
        request_id=request_id,
        error=pb.StreamError(reason=_REASON_VALUE[reason.name], message=text),  # type: ignore[arg-type]
    )


# -- one handler per request kind: core call, then the reply (None: no reply) ------------------
Handler = Callable[["_Stream", Any, int], Awaitable[pb.ServerMessage | None]]


def _logged_in(rid: int, result: LoginResult) -> pb.ServerMessage:
    # (session_token stays empty: the stream is the session)
    return ServerMessage(request_id=rid, logged_in=cv.login_reply(result))


async def _signup(stream: _Stream, request: pb.SignupRequest, rid: int) -> pb.ServerMessage:
    result = await stream.service.signup(stream.session, request.username, request.password)
    stream.notices = request.notices
    return _logged_in(rid, result)


async def _login(stream: _Stream, request: pb.LoginRequest, rid: int) -> pb.ServerMessage:
    result = await stream.service.login(stream.session, request.username, request.password)
    stream.notices = request.notices
    return _logged_in(rid, result)


async def _resume(stream: _Stream, request: pb.ResumeRequest, rid: int) -> pb.ServerMessage:
    result = await stream.service.resume(stream.session, request.resume_token)
    stream.notices = request.notices
    return _logged_in(rid, result)


async def _logout(stream: _Stream, request: pb.LogoutRequest, rid: int) -> pb.ServerMessage:
    await stream.service.logout(stream.session)
    await stream.stop_pusher(cancel=False)  # it ends with the login; the next login starts anew
    return ServerMessage(request_id=rid, logged_out=pb.LogoutReply())


async def _list_accounts(
    stream: _Stream, request: pb.ListAccountsRequest, rid: int
) -> pb.ServerMessage:
    page = await stream.service.list_accounts(
        stream.session, request.pattern, request.after, request.limit
    )
    return ServerMessage(request_id=rid, accounts=cv.accounts_reply(page))


async def _send(stream: _Stream, request: pb.SendRequest, rid: int) -> pb.ServerMessage:
    # (The path of most requests. One recipient goes as a tuple of one, the core's fast path;
    # more as ``[:]``, one call, where iterating the repeated field ends in an IndexError
    # inside protobuf. The reply's fields are set in place: cv.fill_send_reply.)
    recipients = request.recipients
    names = (recipients[0],) if len(recipients) == 1 else recipients[:]
    send_now = stream.service.send_now  # (a store that never waits: no send coroutine)
    if send_now is not None:
        result = send_now(stream.session, names, request.body)
    else:
        result = await stream.service.send(stream.session, names, request.body)
    reply = ServerMessage(request_id=rid)
    cv.fill_send_reply(reply.sent, result)
    return reply


async def _ack(stream: _Stream, request: pb.AckRequest, rid: int) -> None:
    await stream.service.ack(stream.session, request.message_ids)
    return None  # no reply on success (chat.proto)


async def _delete_account(
    stream: _Stream, request: pb.DeleteAccountRequest, rid: int
) -> pb.ServerMessage:
    # An old client sends no password (""): AUTH_FAILED from the core, nothing deleted.
    await stream.service.delete_account(stream.session, request.username, request.password)
    return ServerMessage(request_id=rid, deleted=pb.DeleteAccountReply())


async def _change_password(
    stream: _Stream, request: pb.ChangePasswordRequest, rid: int
) -> pb.ServerMessage:
    changed = await stream.service.change_password(
        stream.session, request.old_password, request.new_password, request.end_other_sessions
    )
    return ServerMessage(request_id=rid, password_changed=cv.password_changed_reply(changed))


async def _list_conversations(
    stream: _Stream, request: pb.ListConversationsRequest, rid: int
) -> pb.ServerMessage:
    page = await stream.service.list_conversations(stream.session, request.before_id, request.limit)
    return ServerMessage(request_id=rid, conversations=cv.conversations_reply(page))


async def _read_history(
    stream: _Stream, request: pb.ReadHistoryRequest, rid: int
) -> pb.ServerMessage:
    page = await stream.service.read_history(
        stream.session, request.participants, request.before_id, request.limit,
        request.conversation_id,
    )  # fmt: skip
    return ServerMessage(request_id=rid, history=cv.history_reply(page))


async def _mark_read(stream: _Stream, request: pb.MarkReadRequest, rid: int) -> pb.ServerMessage:
    marker = await stream.service.mark_read(
        stream.session, request.conversation_id, request.up_to_id
    )
    return ServerMessage(request_id=rid, marked_read=cv.marker_pb(marker))


async def _delete_messages(
    stream: _Stream, request: pb.DeleteMessagesRequest, rid: int
) -> pb.ServerMessage:
    await stream.service.delete_messages(stream.session, request.message_ids, request.for_everyone)
    return ServerMessage(request_id=rid, messages_deleted=pb.DeleteMessagesReply())


#: ClientMessage's oneof field name -> its handler.
HANDLERS: dict[str, Handler] = {
    "signup": _signup,
    "login": _login,
    "logout": _logout,
    "list_accounts": _list_accounts,
    "send": _send,
    "ack": _ack,
    "delete_account": _delete_account,
    "list_conversations": _list_conversations,
    "read_history": _read_history,
    "mark_read": _mark_read,
    "delete_messages": _delete_messages,
    "resume": _resume,
    "change_password": _change_password,
}


class _Turn:
    """Whose turn it is to write on the call. grpc-core allows one outstanding write per call,
    and three writers take turns: the reader (replies), the pusher (pushes) and ``end`` (the
    status). A lock, handed in arrival order from each holder to the next writer waiting.

    Taken at the call site, in two lines, when it is free (nearly always)::

        if turn.held:
            await turn.wait()
        else:
            turn.held = True
        try:
            ...  # write
        finally:
            turn.release()

    where asyncio.Lock costs a coroutine to acquire and two calls to release, on every reply
    and every push (each coroutine layer on the path of a message costs ~1.5k instructions).
    """

    __slots__ = ("held", "waiters")

    def __init__(self) -> None:
        self.held = False
        self.waiters: deque[asyncio.Future[None]] = deque()

    async def wait(self) -> None:
        """Wait until the holder hands the turn over (it is held); the caller then holds it."""
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.waiters.append(waiter)
        try:
            await waiter
        except BaseException:
            # Cancelled: a waiter cancelled while waiting is done, and release() skips it;
            # one cancelled just after the turn was handed to it hands it on.
            if waiter.done() and not waiter.cancelled():
                self.release()
            raise

    def release(self) -> None:
        """Hand the turn to the first writer still waiting, or free it."""
        waiters = self.waiters
        while waiters:
            waiter = waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return
        self.held = False


class _Stream:
    """One Connect call: its session, the turn its writers take, the pusher of the login."""

    __slots__ = (
        "anonymous_since", "busy", "closing", "context", "doomed", "ended", "idle_timeout",
        "notices", "pusher", "server", "service", "session", "task", "turn",
    )  # fmt: skip

    def __init__(self, server: ChatStreamServer, context: Context, ip: str | None) -> None:
        self.server = server
        self.service: ChatService = server.service
        self.context = context
        self.session = server.service.open_session(ip)
        #: When the stream last had no logged-in session (None while it has one): the sweep
        #: ends streams that stay so for the idle timeout.
        self.anonymous_since: float | None = time.monotonic()
        #: Its own idle timeout, the server's give or take ``timeout_spread``: streams opened
        #: in one burst do not all end in one sweep (issue 14, the flood's mass expiry).
        limits = server.limits
        self.idle_timeout = limits.idle_timeout * spread(limits.timeout_spread)
        self.turn = _Turn()
        self.pusher: asyncio.Task[None] | None = None
        self.closing = False  # the call is ending: nothing more is written
        self.ended: asyncio.Event | None = None  # set once end() has sent the status
        self.doomed = False  # the sweep found it stuck once (see ChatStreamServer.sweep)
        self.notices = False  # the login asked for notices too (LoginRequest.notices)
        # The reader is handling a request: if the session ends meanwhile (DeleteAccount),
        # the reader ends the call after writing the reply, never the pusher before it.
        self.busy = False
        self.task = asyncio.current_task()

    async def run(self) -> None:
        """Read, handle, reply, until the client half-closes or the call ends.

        (The path of every request, written out: a coroutine per layer, a property, a
        deserializer wrapped in a Python function each cost instructions on every message.)
        """
        context, session, turn = self.context, self.session, self.turn
        read, write = context.read, context.write
        server = self.server
        writing, admission = server.writing, server.admission
        monotonic = time.monotonic
        await context.send_initial_metadata(())
        while True:
            try:
                message = await read()
            except DecodeError as exc:  # the deserializer's: broken protobuf, invalid UTF-8
                self.closing = True  # the pusher must not end the call first, as DISCONNECTED
                self.service.close_session(session)
                await self.end(_MALFORMED, f"malformed message: {exc}")
                return
            if message is _EOF:
                await self.finish()
                return
            self.busy = True
            # The reply: domain errors become replies here, and only here.
            kind = message.WhichOneof("request")
            rid = message.request_id
            handler = HANDLERS.get(kind) if kind is not None else None
            reply: pb.ServerMessage | None
            if handler is None:
                reply = _error(rid, _MALFORMED, "the message carries no request this server knows")
            elif kind not in _NEVER_SHED and (refusal := admission.busy()) is not None:
                reply = _error(rid, _OVERLOADED, str(refusal))
            else:
                admission.in_flight += 1
                try:
                    reply = await handler(self, getattr(message, kind), rid)
                except SessionClosed:
                    reply = None  # the call ends with the session's reason
                except ChatError as exc:
                    reply = _error(rid, reason_for(exc, session), str(exc))
                finally:
                    admission.in_flight -= 1
            if reply is not None:
                if turn.held:
                    await turn.wait()
                else:
                    turn.held = True
                try:
                    if self.closing:
                        break
                    # marked while the client has not taken it (ChatStreamServer.stalled)
                    writing[self] = monotonic()
                    await write(reply)
                finally:
                    writing.pop(self, None)
                    turn.release()
            self.busy = False
            state = session.state
            if state is _ACTIVE:
                self.anonymous_since = None
                if self.pusher is None:
                    self.pusher = asyncio.create_task(self.push(session), name="grpc-stream-push")
            elif state is _CLOSED:
                break
            elif self.anonymous_since is None:
                self.anonymous_since = time.monotonic()
        await self.end()

    async def push(self, session: Session) -> None:
        """Write one login's deliveries (and notices, if it asked for them); end the call if
        they stop because the session ended."""
        turn, writing, write = self.turn, self.server.writing, self.context.write
        source = session.events() if self.notices else session.deliveries()
        push_arm = cv.push_arm
        monotonic = time.monotonic
        try:
            async for item in source:
                arm, body = push_arm(item)
                message = ServerMessage(**{arm: body})
                if turn.held:  # (as run() writes its replies)
                    await turn.wait()
                else:
                    turn.held = True
                try:
                    if self.closing:
                        return
                    writing[self] = monotonic()
                    await write(message)
                finally:
                    writing.pop(self, None)
                    turn.release()
            if session.closed and not self.closing and not self.busy:
                await self.end()  # (else the reader does, after the reply it is writing)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # the call is gone (cancelled, connection lost): run()'s finally
            log.debug("session %d: pushing stopped: %r", session.id, exc)

    async def stop_pusher(self, *, cancel: bool) -> None:
        """Wait for the pusher to end (it does once the login is over), or cancel it."""
        pusher, self.pusher = self.pusher, None
        if pusher is None or pusher is asyncio.current_task():
            return
        if cancel:
            pusher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pusher

    async def finish(self) -> None:
        """The client is done writing: close the session, end the call with OK."""
        self.closing = True
        self.service.close_session(self.session)
        await self.stop_pusher(cancel=False)

    async def end(self, reason: Reason | None = None, details: str = "") -> None:
        """End the call with ``reason`` (default: why the session ended). Called by the reader,
        the pusher or close(), whichever notices first; the others wait until it is done. A
        write in progress goes first, so a reply that ended the session precedes the status."""
        if self.ended is not None:
            await self.ended.wait()
            return
        self.ended = asyncio.Event()
        self.closing = True
        try:
            if reason is None:
                if self.server.stopping:
                    reason, details = _SHUTDOWN, "session ended: the server is shutting down"
                else:
                    reason = reason_for(SessionClosed(), self.session)
                    details = closed_text(self.session)
            turn = self.turn
            if turn.held:
                await turn.wait()
            else:
                turn.held = True
            try:
                await self.context.abort(reason.code, details, reason.trailing_metadata)
            finally:
                turn.release()
        except grpc.aio.AbortError:
            pass  # abort() always raises it: the status is on its way
        except Exception as exc:  # the call was already gone
            log.debug("session %d: cannot end the call: %r", self.session.id, exc)
        finally:
            self.ended.set()


class ChatStreamServicer:
    """wirechat.v1.ChatStream over one ChatService."""

    def __init__(self, server: ChatStreamServer) -> None:
        self.server = server

    async def Connect(self, requests: Any, context: Context) -> None:
        server = self.server
        ip = peer_ip(context.peer())
        refusal = server.admission.admit(ip)
        if refusal is not None:
            await context.abort(_OVERLOADED.code, str(refusal), _OVERLOADED.trailing_metadata)
        try:
            stream = _Stream(server, context, ip)
            server.streams.add(stream)
            try:
                await stream.run()
            finally:
                server.streams.discard(stream)
                server.writing.pop(stream, None)
                stream.closing = True
                server.service.close_session(stream.session)
                await stream.stop_pusher(cancel=True)
        finally:
            server.admission.release(ip)


class ChatStreamServer:
    """A running grpc-stream listener: ``address`` is ``(host, bound_port)``; ``await close()``."""

    def __init__(self, service: ChatService, guard: Guard | None = None) -> None:
        self.service = service
        self.address: tuple[str, int] = ("", 0)
        self.streams: set[_Stream] = set()
        #: Streams writing a message right now -> when that write began (see ``stalled``).
        self.writing: dict[_Stream, float] = {}
        self._idle_ends: set[asyncio.Task[None]] = set()
        self.stopping = False  # set by close(): ending streams report SHUTDOWN
        guard = guard or Guard()
        self.limits = guard.limits
        self.admission = Admission(guard, LoadMeter(guard.limits.shed_lag))
        self._server = grpc.aio.server(options=server_options(guard.limits, guard.cap))
        self._health = health.aio.HealthServicer()
        self._sweeper: asyncio.Task[None] | None = None
        self._closed = False

    async def start(self, host: str, port: int, tls: ServerTls | None = None) -> None:
        server = self._server
        handler = grpc.stream_stream_rpc_method_handler(
            ChatStreamServicer(self).Connect,
            # (a message that does not parse raises DecodeError from context.read(), in
            # _Stream.run, which ends the call with INVALID_ARGUMENT: grpc never sees it)
            request_deserializer=pb.ClientMessage.FromString,
            response_serializer=pb.ServerMessage.SerializeToString,
        )
        add_service(server, SERVICE_NAME, {"Connect": handler})
        await add_health_and_reflection(server, self._health, SERVICE_NAME)
        target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        try:
            if tls is None:
                bound = server.add_insecure_port(target)
            else:
                bound = server.add_secure_port(target, tls.grpc_credentials())
        except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
            raise OSError(f"cannot listen for gRPC on {host}:{port}: {exc}") from exc
        if bound == 0:  # older grpc versions returned 0 instead of raising
            raise OSError(f"cannot listen for gRPC on {host}:{port}")
        await server.start()
        self.address = (host, bound)
        self._sweeper = asyncio.create_task(self._sweep_forever(), name="grpc-stream-sweeper")
        self.admission.meter.start()

    def stalled(self) -> int:
        """End the sessions whose write (reply or push) has not left for the stall timeout
        (the client stopped reading) as slow consumers and cancel their calls; returns how
        many."""
        deadline = time.monotonic() - self.limits.stall_timeout
        stuck = [stream for stream, since in self.writing.items() if since <= deadline]
        for stream in stuck:
            del self.writing[stream]
            log.info("session %d reads too slowly; ending it", stream.session.id)
            self.service.close_session(stream.session, CloseReason.SLOW_CONSUMER)
            if stream.task is not None:
                stream.task.cancel()
        return len(stuck)

    def idle(self) -> int:
        """End the streams that have had no logged-in session for the idle timeout; returns
        how many."""
        now = time.monotonic()
        ended = 0
        for stream in list(self.streams):
            since = stream.anonymous_since
            if since is None or now - since < stream.idle_timeout or stream.ended is not None:
                continue
            if stream.busy or stream.session.closed:
                continue
            ended += 1
            stream.closing = True
            self.service.close_session(stream.session)
            task = asyncio.create_task(
                stream.end(_IDLE, f"closed: no login within {stream.idle_timeout:.3g} s"),
                name="grpc-stream-idle",
            )
            self._idle_ends.add(task)  # (a reference, until it is done)
            task.add_done_callback(self._idle_ends.discard)
        return ended

    def sweep(self) -> int:
        """Cancel streams whose session ended a whole sweep ago and that are still writing to
        a client that does not read; returns how many were cancelled."""
        cancelled = 0
        for stream in list(self.streams):
            if not stream.session.closed:
                continue
            if stream.doomed and stream.task is not None:
                log.info("cancelling the stuck stream of ended session %d", stream.session.id)
                stream.task.cancel()
                cancelled += 1
            stream.doomed = True
        return cancelled

    async def _sweep_forever(self) -> None:
        limits = self.limits
        interval = max(0.01, min(SWEEP_INTERVAL, limits.stall_timeout / 4, limits.idle_timeout / 4))
        last = time.monotonic()
        while True:
            await asyncio.sleep(interval)
            try:
                self.stalled()
                self.idle()
                if time.monotonic() - last >= SWEEP_INTERVAL:
                    last = time.monotonic()
                    self.sweep()
            except Exception:  # never let one bad stream stop the sweeps
                log.exception("stream sweep failed")

    async def close(self) -> None:
        """Stop: report NOT_SERVING, end every stream with SHUTDOWN, let calls finish briefly."""
        if self._closed:
            return
        self._closed = True
        self.stopping = True
        if self._sweeper is not None:
            self._sweeper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sweeper
        await self._health.enter_graceful_shutdown()
        ending = []
        for stream in list(self.streams):
            self.service.close_session(stream.session, CloseReason.SHUTDOWN)
            ending.append(asyncio.create_task(stream.end(), name="grpc-stream-end"))
        if ending:
            await asyncio.wait(ending, timeout=SHUTDOWN_GRACE)
        await self._server.stop(SHUTDOWN_GRACE)  # cancels what is still running
        await self.admission.meter.stop()
        for task in ending:
            task.cancel()
        await asyncio.gather(*ending, return_exceptions=True)


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    guard: Guard | None = None,
    tls: ServerTls | None = None,
) -> ChatStreamServer:
    """Serve ``service`` as wirechat.v1.ChatStream on ``host:port`` (0: any free port), on the
    running loop. ``guard`` (one per server process) counts each Connect against the
    connection caps and supplies the timeouts; without one this listener makes its own.
    ``tls``: serve over TLS. Raises OSError if the port cannot be bound."""
    server = ChatStreamServer(service, guard)
    await server.start(host, port, tls)
    return server


__all__ = ["HANDLERS", "SERVICE_NAME", "ChatStreamServer", "ChatStreamServicer", "start_server"]
