"""The gRPC ChatClient: one grpc.aio channel, unary calls for commands, one Subscribe stream.

It mirrors core.loopback's session semantics, using chat.proto's rules:
  * Before a login the client has no token; commands then get NOT_LOGGED_IN from the server.
  * A successful Signup/Login stores the token (sent as ``wirechat-session`` metadata from
    then on) and opens the Subscribe stream, read by a background task into ``_on_delivery``.
    The login returns once the server has attached that stream to the session (its response
    headers came back), and Logout is never sent before then, so a Subscribe cannot reach the
    server after the Logout of its own login. A later login on the same client sends the
    token, so the server sees the same session (ALREADY_LOGGED_IN if it is logged in, as on a
    custom connection); logging out and in again any number of times keeps the client usable.
  * A failed Signup/Login ends the session (Rule 4): the client is then closed for good and
    every command raises SessionClosed, just like a custom-protocol client whose connection
    the server closed. The console reconnects with a new client.
  * Each stream belongs to one login (its *generation*: logins and logouts each start a new
    one). Only the stream of the current generation speaks for the session: when it ends
    with a status whose ``wirechat-error`` means "ended" (or a command gets one), the client
    records why in ``closed_reason`` and ends ``messages()``; when it is lost without a
    wirechat-error (server gone, connection broken), that counts as a disconnection, since
    the server closes a session whose stream breaks. A Subscribe the server *refuses* with a
    reason that does not end the session (NOT_LOGGED_IN: the session was logged out first;
    ALREADY_SUBSCRIBED) leaves the session, and the client, as they are. The end of an older
    generation's stream, however it ends, says nothing about the current login: ignored.
  * ``close()`` cancels the stream (which closes the session on the server) and the channel.

Every unary call has a deadline.

Acks are not batched behind the application's back. ``messages()`` (core.client) awaits the
ack of each message before handing it over, one Ack rpc per message, so that "handed over"
implies "delivered" (Rule 11) exactly as on the other transports; batching would mean acking
messages not yet handed over, or handing over messages a second device still sees as pending.
An application that wants fewer round trips uses ``auto_ack=False`` and acks many ids in one
``ack()`` call (up to core.limits.MAX_ACK_IDS).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

import grpc
from google.protobuf.message import Message

from core.client import ChatClient
from core.errors import AlreadyLoggedIn, InvalidArgument, SessionClosed
from core.types import AccountPage, CloseReason, Delivery, LoginResult, SendResult
from transports.grpc._errors import error_from, reason_of
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._generated import chat_pb2_grpc
from transports.grpc._wire import CHANNEL_OPTIONS, SESSION_KEY

log = logging.getLogger(__name__)

#: Deadline of a command (seconds): generous, since it only fires when the server is stuck.
CALL_TIMEOUT = 10.0
#: Deadline of Signup/Login: the server slows repeated failures down by up to 8 s (Rule 3)
#: and hashes the password off-loop.
LOGIN_TIMEOUT = 30.0
#: How long connect() waits for the server before raising.
CONNECT_TIMEOUT = 10.0
#: How long logout/close wait for the Subscribe stream to wind down.
STREAM_STOP_TIMEOUT = 5.0


def open_client(address: tuple[str, int], *, auto_ack: bool = True) -> GrpcChatClient:
    """A client for the gRPC server at ``(host, port)``; ``connect()`` it or use ``async with``."""
    return GrpcChatClient(address, auto_ack=auto_ack)


_UINT32_MAX = 2**32 - 1


def _request(message_class: type[Message], **fields: Any) -> Any:
    """Build a request; a value the wire cannot carry (an id out of uint64 range, a string
    that is not valid Unicode) is the caller's InvalidArgument, as the core would say."""
    try:
        return message_class(**fields)
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"cannot encode the request: {exc}") from None


def _target(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class GrpcChatClient(ChatClient):
    """core.ChatClient over gRPC (see the module docstring for the session rules)."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        auto_ack: bool = True,
        call_timeout: float = CALL_TIMEOUT,
        login_timeout: float = LOGIN_TIMEOUT,
    ) -> None:
        super().__init__(auto_ack=auto_ack)
        self.target = _target(*address)
        self.call_timeout = call_timeout
        self.login_timeout = login_timeout
        self._channel: grpc.aio.Channel | None = None
        self._stub: chat_pb2_grpc.ChatStub | None = None
        self._metadata: tuple[tuple[str, str], ...] = ()
        self._ended: CloseReason | None = None  # the session ended: the client is unusable
        self._stream: grpc.aio.UnaryStreamCall | None = None
        self._pump: asyncio.Task[None] | None = None
        # Bumped by each login, logout and close: the login a Subscribe stream belongs to.
        self._generation = 0

    @property
    def token(self) -> str | None:
        """The session token, once logged in (for tools and tests)."""
        return self._metadata[0][1] if self._metadata else None

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self) -> None:
        """Open the channel and wait until it is connected; OSError if the server is not there."""
        if self._channel is not None:
            return
        channel = grpc.aio.insecure_channel(self.target, options=CHANNEL_OPTIONS)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await self._wait_ready(channel)
        except BaseException as exc:
            await channel.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionError(f"no gRPC server answered at {self.target}") from None
            raise
        self._channel = channel
        self._stub = chat_pb2_grpc.ChatStub(channel)

    async def _wait_ready(self, channel: grpc.aio.Channel) -> None:
        state = channel.get_state(try_to_connect=True)
        while state is not grpc.ChannelConnectivity.READY:
            if state is grpc.ChannelConnectivity.TRANSIENT_FAILURE:
                raise ConnectionRefusedError(f"cannot connect to gRPC server at {self.target}")
            if state is grpc.ChannelConnectivity.SHUTDOWN:
                raise ConnectionError("channel closed while connecting")
            await channel.wait_for_state_change(state)
            state = channel.get_state(try_to_connect=True)

    async def close(self) -> None:
        """Cancel the stream (the server then closes the session) and close the channel."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        self._generation += 1  # the stream we cancel now is no news about the session
        await self._stop_stream(cancel=True)
        await channel.close()
        self._stub = None
        self._on_closed()

    # -- commands --------------------------------------------------------------------------
    async def signup(self, username: str, password: str) -> LoginResult:
        request = _request(pb.SignupRequest, username=username, password=password)
        return await self._log_in(self._live_stub().Signup, request)

    async def login(self, username: str, password: str) -> LoginResult:
        request = _request(pb.LoginRequest, username=username, password=password)
        return await self._log_in(self._live_stub().Login, request)

    async def logout(self) -> None:
        if self._stream is not None:
            await self._attached(self._stream)  # the Logout must not overtake our Subscribe
        await self._call(self._live_stub().Logout, pb.LogoutRequest())
        self._generation += 1  # the stream now ends with the login it belonged to
        await self._stop_stream(cancel=False)  # the server ends it with OK

    async def list_accounts(
        self, pattern: str = "*", after: str = "", limit: int = 0
    ) -> AccountPage:
        if limit < 0:  # the wire's uint32 cannot carry what the core would refuse
            raise InvalidArgument("the page size must not be negative")
        request = _request(
            pb.ListAccountsRequest, pattern=pattern, after=after, limit=min(limit, _UINT32_MAX)
        )
        reply = await self._call(self._live_stub().ListAccounts, request)
        return AccountPage(tuple(reply.usernames), reply.more)

    async def send(self, recipients: Sequence[str], body: str) -> SendResult:
        request = _request(pb.SendRequest, recipients=recipients, body=body)
        reply = await self._call(self._live_stub().Send, request)
        return SendResult(reply.message_id, reply.sent_at_ms, tuple(reply.unknown_recipients))

    async def ack(self, message_ids: Sequence[int]) -> None:
        await self._call(self._live_stub().Ack, _request(pb.AckRequest, message_ids=message_ids))

    async def delete_account(self, username: str) -> None:
        request = _request(pb.DeleteAccountRequest, username=username)
        await self._call(self._live_stub().DeleteAccount, request)
        self._end(CloseReason.ACCOUNT_DELETED)  # this session ended with the account

    # -- internals -------------------------------------------------------------------------
    def _live_stub(self) -> chat_pb2_grpc.ChatStub:
        if self._ended is not None:
            raise SessionClosed(f"session ended: {self._ended.value}")
        if self._stub is None:
            raise ConnectionError("not connected")
        return self._stub

    async def _call(self, rpc: Any, request: Any, timeout: float | None = None) -> Any:
        try:
            return await rpc(request, metadata=self._metadata, timeout=timeout or self.call_timeout)
        except grpc.aio.AioRpcError as err:
            reason = reason_of(err)
            if reason is not None and reason.ends is not None:
                self._end(reason.ends)
            raise error_from(err, reason) from None

    async def _log_in(self, rpc: Any, request: Any) -> LoginResult:
        try:
            reply = await self._call(rpc, request, self.login_timeout)
        except AlreadyLoggedIn:
            raise  # the session is untouched
        except SessionClosed:
            raise  # _call has ended the client already
        except OSError:
            raise  # no answer (deadline, server gone): no token came back, nothing to end
        except Exception:
            self._end(CloseReason.AUTH_FAILED)  # Rule 4: a refused signup/login ends it
            raise
        self._metadata = ((SESSION_KEY, reply.session_token),)
        await self._stop_stream(cancel=False)  # a stream from before a logout, if any
        self._generation += 1
        stream = self._live_stub().Subscribe(pb.SubscribeRequest(), metadata=self._metadata)
        self._stream = stream
        self._pump = asyncio.create_task(
            self._run_pump(stream, self._generation), name="grpc-subscribe"
        )
        await self._attached(stream)
        return LoginResult(reply.username, reply.pending)

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
        """Feed one login's deliveries to the application; learn why the stream ended."""
        try:
            async for item in stream:
                self._on_delivery(
                    Delivery(item.message_id, item.sender, item.body, item.sent_at_ms)
                )
        except grpc.aio.AioRpcError as err:
            self._stream_failed(err, generation)
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                stream.cancel()
                raise
            # Otherwise the call itself was cancelled locally (close, or _end): done.
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
            self._end(CloseReason.DISCONNECTED)
        elif reason.ends is not None:
            self._end(reason.ends)
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

    def _end(self, reason: CloseReason) -> None:
        """The server ended the session: remember why, end messages(), stop streaming."""
        if self._ended is not None:
            return
        self._ended = reason
        self._metadata = ()
        if self._stream is not None:
            self._stream.cancel()
        self._on_closed(reason.value)
