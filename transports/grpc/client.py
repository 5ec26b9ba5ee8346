"""The gRPC client transport: one grpc.aio channel, a unary call per request, one push stream.

``open_client(address)`` returns ``core.ChatClient(GrpcTransport(address))``: every client
*rule* (prechecks, logged-in state, what a failed login or a deletion does, dedup, auto-ack) is
ChatClient's. This module only carries requests over chat.proto and reports what the server
pushes, following chat.proto's session rules:

Theory of operation
  * One dispatch table (``_RPCS``) maps each ``core.requests`` type to its rpc, how the request
    becomes a protobuf message and how the reply becomes the core result. Every call has a
    deadline (``LOGIN_TIMEOUT`` for what logs in or checks a password, ``CALL_TIMEOUT`` for
    the rest). A failed call becomes a ``core.errors`` error through ``_errors`` only (the
    ``wirechat-error`` trailing metadata names the reason; the status code is the fallback);
    a status that says the session has ended is also reported as ``events.session_ended``.
  * Before a login there is no token; commands then get NOT_LOGGED_IN from the server.
  * A successful Signup/Login/Resume stores the token (sent as ``wirechat-session`` metadata
    from then on) and opens the SubscribeEvents stream, read by a background task into
    ``events.delivered`` (deliveries) and ``events.notified`` (the notices of Rules 22-24).
    The request returns once the server has attached that stream to the session (its
    response headers came back), and a Logout is never sent before then, so a
    Subscribe cannot reach the server after the Logout of its own login. A later login on the
    same channel sends the token, so the server sees the same session (ALREADY_LOGGED_IN if it
    is logged in, as on a custom connection); logging out and in again any number of times
    keeps the transport usable.
  * Each stream belongs to one login (its *generation*: logins, logouts and close() each start
    a new one). Only the stream of the current generation speaks for the session: when it ends
    with a status whose ``wirechat-error`` means "ended", that is ``events.session_ended``;
    when it is lost without a wirechat-error (server gone, connection broken), that is
    ``events.connection_lost``, since the server closes a session whose stream breaks. A
    Subscribe the server *refuses* with a reason that does not end the session (NOT_LOGGED_IN:
    the session was logged out first; ALREADY_SUBSCRIBED) leaves the session as it is. The end
    of an older generation's stream, however it ends, says nothing about the current login:
    ignored. A clean end (OK) means the session logged out.
  * ``close()`` cancels the stream (which closes the session on the server) and the channel.

Acks are not batched behind the application's back: ChatClient's ``messages()`` awaits the ack
of each message before handing it over, one Ack rpc per message, so that "handed over" implies
"delivered" (Rule 11) exactly as on the other transports. An application that wants fewer round
trips uses ``auto_ack=False`` and acks many ids in one ``ack()`` (up to ``MAX_ACK_IDS``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import grpc

from core import requests as rq
from core.client import ChatClient, ClientEvents
from core.errors import InvalidArgument
from core.types import CloseReason, Delivery
from transports import _wrong_port
from transports._tls import ClientTls, grpc_channel
from transports.grpc import _convert as cv
from transports.grpc._channel import target, wait_ready
from transports.grpc._errors import error_from, reason_of
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import CHANNEL_OPTIONS, SESSION_KEY

log = logging.getLogger(__name__)

R = TypeVar("R")

#: Deadline of a command (seconds): generous, since it only fires when the server is stuck.
CALL_TIMEOUT = 10.0
#: Deadline of Signup/Login: the server slows repeated failures down by up to 8 s (Rule 3)
#: and hashes the password off-loop.
LOGIN_TIMEOUT = 30.0
#: How long connect() waits for the server before raising.
CONNECT_TIMEOUT = 10.0
#: How long logout/close wait for the Subscribe stream to wind down.
STREAM_STOP_TIMEOUT = 5.0


def open_client(
    address: tuple[str, int], *, auto_ack: bool = True, tls: ClientTls | None = None
) -> ChatClient:
    """A client for the gRPC server at ``(host, port)``; ``connect()`` it or use ``async with``.
    ``tls``: speak TLS, trusting what it names."""
    return ChatClient(GrpcTransport(address, tls=tls), auto_ack=auto_ack)


# -- the dispatch table: request type -> rpc, request message, result ----------------------------
@dataclass(frozen=True, slots=True)
class _Rpc:
    method: str  # the rpc's name on chat_pb2_grpc.ChatStub
    encode: Callable[[Any], Any]  # core request -> protobuf request message
    decode: Callable[[Any], Any]  # protobuf reply -> core result
    logs_in: bool = False  # Signup/Login/Resume: the login deadline, then open the push stream
    slow: bool = False  # checks a password (argon2 off the loop): the login deadline too


def _nothing(reply: Any) -> None:
    return None


_RPCS: dict[type[rq.Request[Any]], _Rpc] = {
    rq.Signup: _Rpc("Signup", cv.signup_pb, cv.login_of, logs_in=True),
    rq.Login: _Rpc("Login", cv.login_pb, cv.login_of, logs_in=True),
    rq.Logout: _Rpc("Logout", lambda r: pb.LogoutRequest(), _nothing),
    rq.ListAccounts: _Rpc("ListAccounts", cv.list_accounts_pb, cv.accounts_of),
    rq.Send: _Rpc("Send", cv.send_pb, cv.sent_of),
    rq.Ack: _Rpc("Ack", cv.ack_pb, _nothing),
    rq.DeleteAccount: _Rpc("DeleteAccount", cv.delete_account_pb, _nothing, slow=True),
    # issue 13: Resume logs in as Login does (the login deadline, then the push stream)
    rq.Resume: _Rpc("Resume", cv.resume_pb, cv.login_of, logs_in=True),
    rq.ChangePassword: _Rpc(
        "ChangePassword", cv.change_password_pb, cv.password_changed_of, slow=True
    ),
    rq.ListConversations: _Rpc("ListConversations", cv.list_conversations_pb, cv.conversations_of),
    rq.ReadHistory: _Rpc("ReadHistory", cv.read_history_pb, cv.history_of),
    rq.MarkRead: _Rpc("MarkRead", cv.mark_read_pb, cv.marker_of),
    rq.DeleteMessages: _Rpc("DeleteMessages", cv.delete_messages_pb, _nothing),
}


class GrpcTransport:
    """core.client.ClientTransport over chat.proto (see the module docstring)."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        call_timeout: float = CALL_TIMEOUT,
        login_timeout: float = LOGIN_TIMEOUT,
        tls: ClientTls | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        self.target = target(*address)
        self.call_timeout = call_timeout
        self.login_timeout = login_timeout
        self._events: ClientEvents | None = None
        self._channel: grpc.aio.Channel | None = None
        self._stub: chat_pb2_grpc.ChatStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._stream: grpc.aio.UnaryStreamCall | None = None
        self._pump: asyncio.Task[None] | None = None
        # Bumped by each login, logout and close: the login a Subscribe stream belongs to.
        self._generation = 0

    @property
    def token(self) -> str | None:
        """The session token, once logged in (for tools and tests)."""
        return self._metadata[0][1] if self._metadata else None

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self, events: ClientEvents) -> None:
        """Open the channel and wait until it is connected; OSError if the server is not there."""
        if self._channel is not None:
            return
        channel = grpc_channel(self.target, CHANNEL_OPTIONS, self.tls)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await wait_ready(channel, self.address, self.tls, "the gRPC (unary) protocol")
        except BaseException as exc:
            await channel.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionError(f"no gRPC server answered at {self.target}") from None
            raise
        self._events = events
        self._channel = channel
        self._stub = chat_pb2_grpc.ChatStub(channel)

    async def close(self) -> None:
        """Cancel the stream (the server then closes the session) and close the channel."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        self._generation += 1  # the stream we cancel now is no news about the session
        self._metadata = ()
        await self._stop_stream(cancel=True)
        await channel.close()
        self._stub = None
        if self._events is not None:
            self._events.connection_lost(None)

    # -- requests --------------------------------------------------------------------------
    async def request(self, request: rq.Request[R]) -> R:
        """Carry ``request`` as its unary rpc; Signup/Login/Resume also open the SubscribeEvents
        stream."""
        stub = self._stub
        if stub is None:
            raise ConnectionError("not connected")
        rpc = _RPCS.get(type(request))
        if rpc is None:
            raise TypeError(f"the gRPC transport cannot carry {request!r}")
        try:
            message = rpc.encode(request)
        except (ValueError, TypeError) as exc:  # e.g. a string that is not valid Unicode
            raise InvalidArgument(f"cannot encode the request: {exc}") from None
        if isinstance(request, rq.Logout) and self._stream is not None:
            await self._attached(self._stream)  # the Logout must not overtake our Subscribe
        try:
            reply = await getattr(stub, rpc.method)(
                message,
                metadata=self._metadata,
                timeout=self.login_timeout if rpc.logs_in or rpc.slow else self.call_timeout,
            )
        except grpc.aio.AioRpcError as err:
            raise self._failed(err) from None
        if rpc.logs_in:
            await self._subscribe(reply.session_token)
        elif isinstance(request, rq.Logout):
            self._generation += 1  # the stream now ends with the login it belonged to
            await self._stop_stream(cancel=False)  # the server ends it with OK
        return rpc.decode(reply)

    def _failed(self, err: grpc.aio.AioRpcError) -> Exception:
        """The exception for a failed call; a status saying the session ended is reported."""
        if err.code() is grpc.StatusCode.UNIMPLEMENTED:  # a gRPC server, but not ours
            return _wrong_port.WrongPort(
                f"{self.target} serves gRPC but not the wirechat unary service: probably the "
                "grpc-stream transport's port; did you mean --transport grpc-stream?"
            )
        reason = reason_of(err)
        if reason is not None and reason.ends is not None:
            self._session_over(reason.ends)
        return error_from(err, reason)

    # -- the Subscribe stream --------------------------------------------------------------
    async def _subscribe(self, token: str) -> None:
        """After a login: send the token from now on, open this login's stream, wait for it."""
        await self._stop_stream(cancel=False)  # a stream from before a logout, if any
        stub = self._stub
        if self._channel is None or stub is None:  # close() ran while we waited for the reply
            raise ConnectionError("the client was closed while logging in")
        self._metadata = ((SESSION_KEY, token),)
        self._generation += 1
        stream = stub.SubscribeEvents(pb.SubscribeRequest(), metadata=self._metadata)
        self._stream = stream
        self._pump = asyncio.create_task(
            self._run_pump(stream, self._generation), name="grpc-subscribe"
        )
        await self._attached(stream)

    async def _attached(self, stream: grpc.aio.UnaryStreamCall) -> None:
        """Wait for the server's answer to the Subscribe: the response headers it sends once
        the stream is attached to the session (from then on, a close() that cancels the stream
        also closes the session there, and a Logout ends the stream with OK), or the status
        that refused it (the pump then reports why). Waiting again is free once it answered.

        grpc.aio's ``wait_for_connection()`` on a unary-stream call returns once the request
        is sent *and* the response headers have arrived (not merely once a connection exists).
        """
        try:
            async with asyncio.timeout(self.call_timeout):
                await stream.wait_for_connection()
        except grpc.aio.AioRpcError:
            pass
        except TimeoutError:
            log.warning(
                "the server did not answer Subscribe within %.0f s; going on without "
                "knowing that the stream is attached",
                self.call_timeout,
            )
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # our caller is being cancelled, not just the stream

    async def _run_pump(self, stream: grpc.aio.UnaryStreamCall, generation: int) -> None:
        """Hand one login's deliveries and notices to the client; learn why the stream ended."""
        assert self._events is not None
        delivered, notified = self._events.delivered, self._events.notified
        push_of = cv.push_of
        try:
            async for item in stream:
                arm = item.WhichOneof("event")
                event = push_of(arm, getattr(item, arm)) if arm is not None else None
                if isinstance(event, Delivery):
                    delivered(event)
                elif event is not None:
                    notified(event)
                # None: a push from a newer server this client does not know: ignored
        except grpc.aio.AioRpcError as err:
            self._stream_failed(err, generation)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                stream.cancel()
                raise
            # Otherwise the call itself was cancelled locally (close, logout timeout): done.
        # A clean end (status OK) means the session logged out: nothing more to do.

    def _stream_failed(self, err: grpc.aio.AioRpcError, generation: int) -> None:
        """What the failure of the Subscribe stream of login ``generation`` means."""
        if generation != self._generation:
            log.debug("the stream of an earlier login ended: %s %s", err.code(), err.details())
            return
        # Only a reason the server declared counts here: a status without wirechat-error on
        # a stream comes from gRPC itself (connection lost, server gone), not a refusal.
        reason = reason_of(err, by_code=False)
        if reason is None:  # the server closes a session whose stream breaks
            log.debug("subscribe stream failed: %s %s", err.code(), err.details())
            self._generation += 1
            self._metadata = ()
            if self._events is not None:
                self._events.connection_lost(CloseReason.DISCONNECTED.value)
        elif reason.ends is not None:
            self._session_over(reason.ends)
        else:  # refused, but the session lives on (logged out first, or already subscribed)
            log.warning("the server refused the Subscribe stream: %s", err.details())

    async def _stop_stream(self, *, cancel: bool) -> None:
        stream, pump = self._stream, self._pump
        self._stream = self._pump = None
        if pump is None or stream is None:
            return
        if cancel:
            stream.cancel()
        if pump is asyncio.current_task():
            return
        try:
            async with asyncio.timeout(STREAM_STOP_TIMEOUT):
                await asyncio.shield(pump)
        except TimeoutError:
            log.warning(
                "the subscribe stream did not end in %.0f s; cancelling", STREAM_STOP_TIMEOUT
            )
            stream.cancel()
            pump.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await pump

    def _session_over(self, reason: CloseReason) -> None:
        """The server ended the session: forget the token, stop streaming, report why."""
        self._generation += 1  # whatever the stream says next is no news
        self._metadata = ()
        if self._stream is not None:
            self._stream.cancel()
        if self._events is not None:
            self._events.session_ended(reason.value)


__all__ = ["CALL_TIMEOUT", "LOGIN_TIMEOUT", "GrpcTransport", "open_client"]
