"""The gRPC server: chat.proto's rpcs on grpc.aio, around one ChatService.

Theory of operation
  * grpc.aio runs each rpc as a task on the running event loop: the same loop as the custom
    listener and the ChatService, so the core still needs no locks.
  * A handler only converts: request -> core arguments, core result -> reply. The caller's
    session comes from the ``wirechat-session`` token (_sessions); domain errors become
    statuses in one place (_errors.abort), reached from the ``_command`` wrapper, from
    ``_log_in`` and from Subscribe.
  * Signup/Login/Resume without a token open a session and issue a token only on success; on
    failure the core has already closed the session (Rule 4) and no token exists. (The
    session token is the transport's; the resume token in LoginReply is the core's, issue 13.)
  * Subscribe drains ``session.deliveries()`` (deliveries only: the stream of clients from
    before history), SubscribeEvents ``session.events()`` (deliveries and the notices of Rules
    22-24); both are ``_push``. If it ends because the session logged out, the stream ends
    with OK; if the session ended, with the status of its close reason (deleted, too slow,
    shutdown). If the *client* cancels it (or its connection dies, or its deadline expires),
    grpc cancels our task: the finally block closes the session, as a dropped TCP connection
    would.
  * Bounds (_limits): a Signup/Login without a token starts a session only if the Guard admits
    the client's IP (``context.peer()``) and the loop keeps up; the admission is given back
    when the session ends. Requests that create work are refused with RESOURCE_EXHAUSTED
    (OVERLOADED) while the loop runs behind; Ack, Logout and DeleteAccount never are. A push
    that makes no progress for the stall timeout ends its session (SLOW_CONSUMER).
  * History messages <-> core values live in ``_convert`` (shared with grpc-stream).
  * Also on: server reflection, and the standard health service (SERVING for "" and for
    wirechat.v1.Chat; NOT_SERVING once close() begins).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Any, TypeAlias, TypeVar

import grpc
from google.protobuf.message import DecodeError
from grpc_health.v1 import health

from core.errors import ChatError, InvalidArgument, NotLoggedIn, SessionClosed
from core.service import ChatService
from core.session import Session, State
from core.types import LoginResult
from transports._guard import Guard
from transports._tls import ServerTls
from transports.grpc import _convert as cv
from transports.grpc._errors import (
    BY_NAME,
    AlreadySubscribed,
    Overloaded,
    abort,
    abort_with,
    closed_text,
)
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._limits import (
    PROBE_TIMEOUT,
    Admission,
    LoadMeter,
    peer_ip,
    server_options,
)
from transports.grpc._services import add_health_and_reflection, add_service
from transports.grpc._sessions import SessionTable
from transports.grpc._wire import IDLE_TIMEOUT, SESSION_KEY

log = logging.getLogger(__name__)

SERVICE_NAME: str = pb.DESCRIPTOR.services_by_name["Chat"].full_name  # "wirechat.v1.Chat"

#: Seconds close() lets running rpcs finish (streams get their SHUTDOWN status out).
SHUTDOWN_GRACE = 1.0

Reply = TypeVar("Reply")
Context: TypeAlias = "grpc.aio.ServicerContext[Any, Any]"


class Malformed:
    """What a request that is not valid protobuf (bad wire format, invalid UTF-8) decodes to.

    grpc would answer a deserializer's exception with UNKNOWN and log a traceback per request;
    handing the handler this marker instead gets the client INVALID_ARGUMENT, quietly.
    """

    __slots__ = ("error",)

    def __init__(self, error: str) -> None:
        self.error = error


def _lenient(parse: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return parse(data)
        except DecodeError as exc:
            return Malformed(f"malformed request: {exc}")

    return deserialize


def _check(request: Any) -> None:
    if request.__class__ is Malformed:
        raise InvalidArgument(request.error)


def _token(context: Context) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == SESSION_KEY:
            return value
    return None


#: Rpcs served however loaded the server is: each frees state (or ends it) rather than
#: creating work, and refusing an Ack would only bring the message back later.
_NEVER_SHED = frozenset({"Ack", "Logout", "DeleteAccount"})
#: (a module constant: an enum member read from its class, as ``Session.closed`` does, costs
#: ~850 instructions on CPython 3.11, on every call)
_CLOSED = State.CLOSED


def _command(
    handler: Callable[[ChatServicer, Any, Session], Awaitable[Reply]],
) -> Callable[[ChatServicer, Any, Context], Awaitable[Reply]]:
    """Wrap an rpc that acts as the caller's session: shed load, find the session, run, map
    domain errors."""
    shed = handler.__name__ not in _NEVER_SHED

    @functools.wraps(handler)
    async def rpc(self: ChatServicer, request: Any, context: Context) -> Reply:
        session = entry = None
        admission = self.admission
        admission.in_flight += 1
        try:
            if shed and (refusal := admission.busy(context.time_remaining())) is not None:
                raise Overloaded(str(refusal))
            _check(request)
            entry = self.sessions.entry(_token(context))
            session = entry.session
            return await handler(self, request, session)
        except ChatError as exc:
            await abort(context, exc, session)
        finally:
            admission.in_flight -= 1
            if entry is not None and entry.session.state is _CLOSED:
                self.sessions.release(entry)  # (deleted, say): its place is free at once

    return rpc


class ChatServicer(chat_pb2_grpc.ChatServicer):
    """wirechat.v1.Chat over one ChatService."""

    def __init__(
        self, service: ChatService, sessions: SessionTable, admission: Admission | None = None
    ) -> None:
        self.service = service
        self.sessions = sessions
        self.admission = admission or Admission(Guard(), LoadMeter())
        self.meter = self.admission.meter
        self.stopping = False  # set by GrpcServer.close(): ending streams report SHUTDOWN

    # -- sessions ------------------------------------------------------------------------
    async def Signup(self, request: pb.SignupRequest, context: Context) -> pb.LoginReply:
        return await self._log_in(
            lambda session: self.service.signup(session, request.username, request.password),
            request,
            context,
        )

    async def Login(self, request: pb.LoginRequest, context: Context) -> pb.LoginReply:
        return await self._log_in(
            lambda session: self.service.login(session, request.username, request.password),
            request,
            context,
        )

    async def Resume(self, request: pb.ResumeRequest, context: Context) -> pb.LoginReply:
        """A login with a resume token instead of the password (issue 13): a session like
        Login's, and the same resume token back."""
        return await self._log_in(
            lambda session: self.service.resume(session, request.resume_token),
            request,
            context,
        )

    async def _log_in(
        self,
        log_in: Callable[[Session], Awaitable[LoginResult]],
        request: pb.SignupRequest | pb.LoginRequest | pb.ResumeRequest,
        context: Context,
    ) -> pb.LoginReply:
        token = _token(context)
        fresh = token is None
        session: Session | None = None
        ip = peer_ip(context.peer()) if fresh else None
        try:
            _check(request)
            if token is None:
                refusal = self.admission.admit(ip, context.time_remaining())
                if refusal is not None:
                    raise Overloaded(str(refusal))
                session = self.service.open_session(ip)  # (holds the admission from here)
            else:
                if (refusal := self.admission.busy(context.time_remaining())) is not None:
                    raise Overloaded(str(refusal))
                session = self.sessions.entry(token).session
            result = await log_in(session)
            if token is None:
                token = self.sessions.issue(session, ip, admitted=True)
            return cv.login_reply(result, token)
        except ChatError as exc:
            await abort(context, exc, session)
        finally:
            if fresh and token is None and session is not None:
                # Failed or cancelled before a token existed: nobody can reach this session.
                self.service.close_session(session)
                self.admission.release(ip)

    @_command
    async def Logout(self, request: pb.LogoutRequest, session: Session) -> pb.LogoutReply:
        await self.service.logout(session)
        return pb.LogoutReply()

    @_command
    async def DeleteAccount(
        self, request: pb.DeleteAccountRequest, session: Session
    ) -> pb.DeleteAccountReply:
        # An old client sends no password (""): the core refuses with AUTH_FAILED and a
        # sentence that says to update the client; nothing is deleted.
        await self.service.delete_account(session, request.username, request.password)
        return pb.DeleteAccountReply()

    @_command
    async def ChangePassword(
        self, request: pb.ChangePasswordRequest, session: Session
    ) -> pb.ChangePasswordReply:
        changed = await self.service.change_password(
            session, request.old_password, request.new_password, request.end_other_sessions
        )
        return cv.password_changed_reply(changed)

    # -- accounts and messages -----------------------------------------------------------
    @_command
    async def ListAccounts(
        self, request: pb.ListAccountsRequest, session: Session
    ) -> pb.ListAccountsReply:
        page = await self.service.list_accounts(
            session, request.pattern, request.after, request.limit
        )
        return cv.accounts_reply(page)

    @_command
    async def Send(self, request: pb.SendRequest, session: Session) -> pb.SendReply:
        # One recipient goes as a tuple of one: the core's fast path (no validation pass,
        # and the store keeps the route of a tuple); more as ``[:]``, one call, where
        # iterating the repeated field ends in an IndexError raised inside protobuf.
        recipients = request.recipients
        names = (recipients[0],) if len(recipients) == 1 else recipients[:]
        send_now = self.service.send_now  # (a store that never waits: no send coroutine)
        if send_now is not None:
            return cv.send_reply(send_now(session, names, request.body))
        return cv.send_reply(await self.service.send(session, names, request.body))

    @_command
    async def Ack(self, request: pb.AckRequest, session: Session) -> pb.AckReply:
        await self.service.ack(session, request.message_ids)
        return pb.AckReply()

    # -- history (Rules 19-25) -----------------------------------------------------------
    @_command
    async def ListConversations(
        self, request: pb.ListConversationsRequest, session: Session
    ) -> pb.ListConversationsReply:
        page = await self.service.list_conversations(session, request.before_id, request.limit)
        return cv.conversations_reply(page)

    @_command
    async def ReadHistory(
        self, request: pb.ReadHistoryRequest, session: Session
    ) -> pb.ReadHistoryReply:
        page = await self.service.read_history(
            session, request.participants, request.before_id, request.limit,
            request.conversation_id,
        )  # fmt: skip
        return cv.history_reply(page)

    @_command
    async def MarkRead(self, request: pb.MarkReadRequest, session: Session) -> pb.ReadMarker:
        marker = await self.service.mark_read(session, request.conversation_id, request.up_to_id)
        return cv.marker_pb(marker)

    @_command
    async def DeleteMessages(
        self, request: pb.DeleteMessagesRequest, session: Session
    ) -> pb.DeleteMessagesReply:
        await self.service.delete_messages(session, request.message_ids, request.for_everyone)
        return pb.DeleteMessagesReply()

    # -- the push streams ----------------------------------------------------------------
    # (grpc.aio wants async generator functions here; aclosing() runs _push's finally at once
    # when grpc closes the outer generator.)
    async def Subscribe(
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.Delivery]:
        """Deliveries only, as before history existed (old clients)."""
        push = self._push(request, context, Session.deliveries, cv.delivery_pb)
        async with contextlib.aclosing(push) as items:
            async for item in items:
                yield item

    async def SubscribeEvents(
        self, request: pb.SubscribeRequest, context: Context
    ) -> AsyncIterator[pb.SessionEvent]:
        """Deliveries and notices."""
        push = self._push(request, context, Session.events, cv.session_event_pb)
        async with contextlib.aclosing(push) as items:
            async for item in items:
                yield item

    async def _push(
        self,
        request: pb.SubscribeRequest,
        context: Context,
        source: Callable[[Session], AsyncIterator[Any]],
        convert: Callable[[Any], Reply],
    ) -> AsyncGenerator[Reply, None]:
        session = None
        try:
            _check(request)
            entry = self.sessions.entry(_token(context))
            session = entry.session
            if session.closed:
                raise SessionClosed(closed_text(session))
            if not session.active:
                raise NotLoggedIn()
            if entry.stream is not None and not entry.stream.done():
                raise AlreadySubscribed()
        except ChatError as exc:
            await abort(context, exc, session)
        entry.stream = asyncio.current_task()
        gone = True  # until the loop ends by itself, an exit means the client went away
        writing, clock = self.sessions.writing, time.monotonic
        try:
            # Headers now, not with the first message: the client waits for them, so that
            # once its login returns, closing it is sure to cancel a stream we know about.
            await context.send_initial_metadata(())
            async for event in source(session):
                writing[entry] = clock()  # grpc resumes us once the write is done
                yield convert(event)
                writing.pop(entry, None)
            gone = False
        finally:
            writing.pop(entry, None)
            entry.stream = None
            if gone:
                self.service.close_session(session)
            if session.closed:
                self.sessions.release(entry)
        if session.closed:
            if self.stopping:
                await abort_with(context, BY_NAME["SHUTDOWN"], "the server is shutting down")
            await abort(context, SessionClosed(closed_text(session)), session)
        # Otherwise the session logged out: the stream ends with OK.


def add_to_server(servicer: ChatServicer, server: grpc.aio.Server) -> None:
    """Serve wirechat.v1.Chat, as the generated add_ChatServicer_to_server does, but with
    request parsers that turn malformed input into Malformed (see there), and as a generic
    handler only (_services: a registered method costs every call)."""
    handlers = {}
    for method in pb.DESCRIPTOR.services_by_name["Chat"].methods:
        request_class = getattr(pb, method.input_type.name)
        response_class = getattr(pb, method.output_type.name)
        make_handler = (
            grpc.unary_stream_rpc_method_handler
            if method.server_streaming
            else grpc.unary_unary_rpc_method_handler
        )
        handlers[method.name] = make_handler(
            getattr(servicer, method.name),
            request_deserializer=_lenient(request_class.FromString),
            response_serializer=response_class.SerializeToString,
        )
    add_service(server, SERVICE_NAME, handlers)


class GrpcServer:
    """A running gRPC listener: ``address`` is ``(host, bound_port)``; ``await close()``."""

    def __init__(
        self,
        server: grpc.aio.Server,
        servicer: ChatServicer,
        health_servicer: health.aio.HealthServicer,
        address: tuple[str, int],
        probe_channel: grpc.aio.Channel | None = None,
    ) -> None:
        self.address = address
        self.servicer = servicer
        self._server = server
        self._health = health_servicer
        self._probe_channel = probe_channel
        self._closed = False

    @property
    def sessions(self) -> SessionTable:
        return self.servicer.sessions

    async def close(self) -> None:
        """Stop: report NOT_SERVING, end our sessions' streams, let rpcs finish briefly."""
        if self._closed:
            return
        self._closed = True
        self.servicer.stopping = True
        await self._health.enter_graceful_shutdown()
        self.sessions.close_all()  # streams wake up and end with UNAVAILABLE (SHUTDOWN)
        await self._server.stop(SHUTDOWN_GRACE)
        await self.sessions.close()  # anything that logged in during the grace period
        await self.servicer.meter.stop()
        if self._probe_channel is not None:
            await self._probe_channel.close()


def _bind_target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    idle_timeout: float = IDLE_TIMEOUT,
    guard: Guard | None = None,
    tls: ServerTls | None = None,
) -> GrpcServer:
    """Serve ``service`` over gRPC on ``host:port`` (0: any free port) on the running loop.

    ``guard`` (one per server process, shared by every listener) counts sessions against the
    connection caps and supplies the timeouts; without one this listener makes its own.
    ``tls``: serve over TLS. Raises OSError if the port cannot be bound.
    """
    guard = guard or Guard()
    limits = guard.limits
    server = grpc.aio.server(options=server_options(limits, guard.cap))
    probe_channel: grpc.aio.Channel | None = None
    admission = Admission(guard, LoadMeter(limits.shed_lag))
    sessions = SessionTable(
        service,
        idle_timeout=idle_timeout,
        anonymous_timeout=min(idle_timeout, limits.idle_timeout),
        stall_timeout=limits.stall_timeout,
        release=admission.release,
    )
    servicer = ChatServicer(service, sessions, admission)
    add_to_server(servicer, server)

    health_servicer = health.aio.HealthServicer()
    await add_health_and_reflection(server, health_servicer, SERVICE_NAME)

    try:
        if tls is None:
            bound = server.add_insecure_port(_bind_target(host, port))
        else:
            bound = server.add_secure_port(_bind_target(host, port), tls.grpc_credentials())
            # The meter's probe cannot check our own certificate (the CA that signed it need
            # not be here): it dials a second port, on the loopback, that grpc opens to local
            # callers only (local credentials: no TLS, and nothing leaves the machine).
            local = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
            probe_port = server.add_secure_port("127.0.0.1:0", local)
    except RuntimeError as exc:  # grpc reports a failed bind as RuntimeError
        raise OSError(f"cannot listen for gRPC on {host}:{port}: {exc}") from exc
    if bound == 0:  # older grpc versions returned 0 instead of raising
        raise OSError(f"cannot listen for gRPC on {host}:{port}")
    await server.start()
    sessions.start()
    # The meter's queue probe (see LoadMeter): a Send without a token, which waits in
    # grpc-core's queue of calls like any other call (one queue for every method: _services),
    # then is refused at once.
    probe_options = (("grpc.use_local_subchannel_pool", 1),)
    if tls is None:
        target = _bind_target(_reachable(host), bound)
        probe_channel = grpc.aio.insecure_channel(target, options=probe_options)
    else:
        probe_channel = grpc.aio.secure_channel(
            f"127.0.0.1:{probe_port}",
            grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP),
            options=probe_options,
        )
    send = chat_pb2_grpc.ChatStub(probe_channel).Send
    admission.meter = servicer.meter = LoadMeter(
        limits.shed_lag, probe=lambda: send(pb.SendRequest(), timeout=PROBE_TIMEOUT)
    )
    admission.meter.start()
    return GrpcServer(server, servicer, health_servicer, (host, bound), probe_channel)


def _reachable(host: str) -> str:
    """An address that reaches a listener bound to ``host`` (a wildcard: the loopback)."""
    return {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)


__all__ = ["SERVICE_NAME", "ChatServicer", "GrpcServer", "add_to_server", "start_server"]
