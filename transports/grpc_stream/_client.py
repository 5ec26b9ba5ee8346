"""The grpc-stream client transport: one channel, one ``ChatStream.Connect`` call per session.

``open_client(address)`` returns ``core.ChatClient(GrpcStreamTransport(address))``: every client
*rule* is ChatClient's; this module carries requests and hands over what the server pushes.

Theory of operation (chat.proto, "The stream service", is the contract)
  * ``connect()`` opens the channel, starts the call and waits for the server's response
    headers, so a server without ChatStream is an error at connect, not at the first request.
  * A request takes the lowest free request id (so ids stay one-byte varints, as on the custom
    protocol) and keeps it until its reply arrives, even if the caller stopped waiting. Ack has
    no success reply: it travels on id 0 and is fire-and-forget; a failed Ack's error (id 0)
    is logged.
  * One write in flight, and no writer task. grpc.aio allows one write in flight per call, and
    a write cancelled half-way cancels the whole call (grpc.aio's ``_write``): a caller cancelled
    while waiting must never end the session, so no caller ever awaits a write. When no write
    is in flight, ``request()`` starts ``call.write`` on its own stack and returns; the write
    is stepped by hand (``_step``, as ``_eager`` steps a coroutine: no task), its completion
    runs it to its end and starts the next queued message's write, in order; nobody but
    ``close()`` cancels it. (A writer task cost a wake-up and a task step per write: issue 10.)
  * Signup/Login/Resume set ``notices``: the server then pushes the notices of Rules 22-24 too.
  * One *reader* task reads the call: a Delivery goes to ``events.delivered``, a notice
    (sent_copy, read_marker, gone) to ``events.notified``; a reply resolves its request's
    future with the core result, or with the error (``error_of``: the one place ``StreamError``
    becomes a ``core.errors`` error). ``request()`` is no coroutine: it returns that future,
    so a call wakes its caller once and costs no coroutine of its own. When the call ends,
    its status decides: a ``wirechat-error`` reason that ends a session is ``events.session_ended``,
    anything else (server gone, connection broken) ``events.connection_lost``.
  * ``close()`` drains the queue and half-closes, so the server handles the last Acks before it
    closes the session and ends the call with OK; then (or after ``CLOSE_TIMEOUT``) it cancels
    the call and closes the channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
from asyncio import InvalidStateError
from collections import deque
from collections.abc import Awaitable, Callable, Generator
from typing import Any, TypeVar

import grpc

from core import requests as rq
from core.client import ChatClient, ClientEvents
from core.errors import ChatError, InvalidArgument, LimitExceeded, SessionClosed
from core.types import Delivery
from transports import _wrong_port
from transports._eager import FINISHED
from transports._tls import ClientTls, grpc_channel
from transports.grpc import _convert as cv
from transports.grpc._channel import target, wait_ready
from transports.grpc._errors import BY_NAME, reason_of
from transports.grpc._generated import chat_pb2 as pb
from transports.grpc._wire import CHANNEL_OPTIONS, MAX_MESSAGE_BYTES
from transports.grpc_stream._server import SERVICE_NAME

log = logging.getLogger(__name__)

R = TypeVar("R")

METHOD = f"/{SERVICE_NAME}/Connect"
#: How long connect() waits for the server (TCP, HTTP/2 and the call's response headers).
CONNECT_TIMEOUT = 10.0
#: How long close() waits for the server to handle what was sent and end the call with OK.
CLOSE_TIMEOUT = 2.0
_U32_MAX = cv.U32_MAX

ClientMessage = pb.ClientMessage
_REASON_NAME: dict[int, str] = {pb.ErrorReason.Value(name): name for name in BY_NAME}


def open_client(
    address: tuple[str, int], *, auto_ack: bool = True, tls: ClientTls | None = None
) -> ChatClient:
    """A ChatClient for the grpc-stream server at ``(host, port)``; ``connect()`` it or use
    ``async with``. ``tls``: speak TLS, trusting what it names."""
    return ChatClient(GrpcStreamTransport(address, tls=tls), auto_ack=auto_ack)


# -- core requests <-> chat.proto: (build the ClientMessage, the reply's field, its result) ----
def _nothing(reply: Any) -> None:
    return None


def _send(r: rq.Send, rid: int) -> pb.ClientMessage:
    """A Send's ClientMessage, filled in place (the hottest request: ~0.7 µs less than building
    a SendRequest and copying it into the ClientMessage)."""
    message = ClientMessage(request_id=rid)
    send = message.send
    send.recipients.extend(r.recipients)
    send.body = r.body
    return message


Encoder = Callable[[Any, int], pb.ClientMessage]
#: request type -> (its ClientMessage, the ServerMessage field of its reply, the core result)
CODEC: dict[type, tuple[Encoder, str, Callable[[Any], Any]]] = {
    rq.Send: (_send, "sent", cv.sent_of),
    rq.Signup: (
        lambda r, rid: ClientMessage(request_id=rid, signup=cv.signup_pb(r, notices=True)),
        "logged_in",
        cv.login_of,
    ),
    rq.Login: (
        lambda r, rid: ClientMessage(request_id=rid, login=cv.login_pb(r, notices=True)),
        "logged_in",
        cv.login_of,
    ),
    rq.Logout: (
        lambda r, rid: ClientMessage(request_id=rid, logout=pb.LogoutRequest()),
        "logged_out",
        _nothing,
    ),
    rq.ListAccounts: (
        lambda r, rid: ClientMessage(request_id=rid, list_accounts=cv.list_accounts_pb(r)),
        "accounts",
        cv.accounts_of,
    ),
    rq.DeleteAccount: (
        lambda r, rid: ClientMessage(request_id=rid, delete_account=cv.delete_account_pb(r)),
        "deleted",
        _nothing,
    ),
    # issue 13
    rq.Resume: (
        lambda r, rid: ClientMessage(request_id=rid, resume=cv.resume_pb(r, notices=True)),
        "logged_in",
        cv.login_of,
    ),
    rq.ChangePassword: (
        lambda r, rid: ClientMessage(request_id=rid, change_password=cv.change_password_pb(r)),
        "password_changed",
        cv.password_changed_of,
    ),
    rq.ListConversations: (
        lambda r, rid: ClientMessage(
            request_id=rid, list_conversations=cv.list_conversations_pb(r)
        ),
        "conversations",
        cv.conversations_of,
    ),
    rq.ReadHistory: (
        lambda r, rid: ClientMessage(request_id=rid, read_history=cv.read_history_pb(r)),
        "history",
        cv.history_of,
    ),
    rq.MarkRead: (
        lambda r, rid: ClientMessage(request_id=rid, mark_read=cv.mark_read_pb(r)),
        "marked_read",
        cv.marker_of,
    ),
    rq.DeleteMessages: (
        lambda r, rid: ClientMessage(request_id=rid, delete_messages=cv.delete_messages_pb(r)),
        "messages_deleted",
        _nothing,
    ),
}

#: ServerMessage's push arms (request_id 0, never a reply): see chat.proto.
PUSHES = frozenset({"delivery", "sent_copy", "read_marker", "gone"})


def error_of(error: pb.StreamError) -> ChatError:
    """The core error a StreamError reply stands for: the one place they are mapped."""
    reason = BY_NAME.get(_REASON_NAME.get(error.reason, ""))
    text = error.message or (reason.name.replace("_", " ").lower() if reason else "refused")
    return reason.error(text) if reason is not None else ChatError(text)


def _ack(request: rq.Ack, rid: int) -> pb.ClientMessage:
    return ClientMessage(ack=cv.ack_pb(request))  # always id 0


def _encode(build: Encoder, request: Any, rid: int) -> bytes:
    """Serialize a request; what chat.proto cannot carry is the caller's error, as the server
    would have said (a lone surrogate, an id out of range, a message over the size limit)."""
    try:
        data = build(request, rid).SerializeToString()
    except (ValueError, TypeError) as exc:
        raise InvalidArgument(f"cannot encode the request: {exc}") from None
    if len(data) > MAX_MESSAGE_BYTES:
        raise LimitExceeded(
            f"the request is {len(data)} bytes; a gRPC message is at most {MAX_MESSAGE_BYTES}"
        )
    return data


class GrpcStreamTransport:
    """core.client.ClientTransport over one ChatStream.Connect call (see the module docstring)."""

    def __init__(self, address: tuple[str, int], *, tls: ClientTls | None = None) -> None:
        self.address = address
        self.tls = tls
        self.target = target(*address)
        self._events: ClientEvents | None = None
        self._channel: grpc.aio.Channel | None = None
        self._call: Any = None  # grpc.aio.StreamStreamCall
        self._loop: asyncio.AbstractEventLoop | None = None
        # request id -> (its caller's future, the reply's field, its result, the request type)
        self._waiting: dict[int, tuple[asyncio.Future[Any], str, Callable[[Any], Any], type]] = {}
        self._free_ids: list[int] = []  # a heap of released ids below _next_id
        self._next_id = 1
        self._outbox: deque[bytes] = deque()  # what waits for the write in flight
        # what the write in flight (or the half-close) waits for, and the rest of it
        self._writing: asyncio.Future[Any] | None = None
        self._steps: Generator[Any, None, None] | None = None  # (None: none yet)
        self._writes_over = False  # half-closed, or a write failed: nothing more is written
        self._flushed: asyncio.Future[None] | None = None  # close(): done when writes are over
        self._reader: asyncio.Task[None] | None = None
        self._gone: Exception | None = None  # set: the call is over; requests raise this
        self._closing = False  # close() began: the end of the call is no news

    # -- lifecycle -------------------------------------------------------------------------
    async def connect(self, events: ClientEvents) -> None:
        """Open the channel and the call; OSError/ConnectionError if the server is not there."""
        self._events = events
        self._loop = asyncio.get_running_loop()
        channel = grpc_channel(self.target, CHANNEL_OPTIONS, self.tls)
        try:
            async with asyncio.timeout(CONNECT_TIMEOUT):
                await wait_ready(channel, self.address, self.tls, "the grpc-stream protocol")
                call = channel.stream_stream(
                    METHOD,
                    request_serializer=None,  # we send bytes, serialized and size-checked
                    response_deserializer=pb.ServerMessage.FromString,
                )()
                await call.initial_metadata()
                if call.done():
                    code, details = await call.code(), await call.details()
                    if code is grpc.StatusCode.UNIMPLEMENTED:  # a gRPC server, not ours
                        raise _wrong_port.WrongPort(
                            f"{self.target} serves gRPC but not the grpc-stream service: "
                            "probably the unary gRPC transport's port; did you mean "
                            "--transport grpc?"
                        )
                    raise ConnectionError(f"the server refused the stream: {code.name} {details}")
        except BaseException as exc:
            await channel.close()
            if isinstance(exc, TimeoutError):
                raise ConnectionError(f"no grpc-stream server answered at {self.target}") from None
            raise
        self._channel, self._call = channel, call
        self._reader = asyncio.create_task(self._read(call), name="grpc-stream-reader")

    async def close(self) -> None:
        """Half-close after what is queued (the server handles it, then ends with OK), then
        cancel the call and close the channel. Idempotent."""
        channel, self._channel = self._channel, None
        if channel is None:
            return
        self._closing = True
        call, reader = self._call, self._reader
        if self._gone is None:
            flushed = self._flushed = self._loop.create_future()  # type: ignore[union-attr]
            if self._writes_over:
                flushed.set_result(None)
            elif self._writing is None:
                self._write_next()  # (idle: half-close now)
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLOSE_TIMEOUT):
                    await asyncio.wait([flushed] if reader is None else [flushed, reader])
        call.cancel()
        writing = self._writing
        if writing is not None:
            writing.cancel()  # (it would fail with the call anyway)
        if reader is not None and not reader.done():
            reader.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reader
        await channel.close()
        self._over(ConnectionError("not connected: closed by the client"))
        if self._events is not None:
            self._events.connection_lost(None)

    # -- requests --------------------------------------------------------------------------
    def request(self, request: rq.Request[R]) -> Awaitable[R]:
        """Send ``request``; awaiting the result gives its reply's result, or raises the error
        it maps to.

        Not a coroutine, for speed: it returns the very future the reader resolves with the
        result, so a call costs no coroutine of its own and wakes its caller once (issue 8)."""
        if self._gone is not None:
            raise type(self._gone)(*self._gone.args)
        cls = request.__class__
        codec = CODEC.get(cls)
        if codec is None:
            if cls is rq.Ack:
                self._queue(_encode(_ack, request, 0))
                done: asyncio.Future[Any] = self._loop.create_future()  # type: ignore[union-attr]
                done.set_result(None)
                return done
            raise TypeError(f"the grpc-stream transport cannot carry {request!r}")
        free_ids = self._free_ids
        rid = heapq.heappop(free_ids) if free_ids else self._new_id()
        try:
            data = _encode(codec[0], request, rid)
        except BaseException:
            heapq.heappush(self._free_ids, rid)
            raise
        future: asyncio.Future[R] = self._loop.create_future()  # type: ignore[union-attr]
        # cancelled: the id stays taken until the reply comes
        self._waiting[rid] = (future, codec[1], codec[2], cls)
        self._queue(data)
        return future

    def _new_id(self) -> int:
        """The next id never used (lower ones are all taken: ``_free_ids`` is empty)."""
        rid = self._next_id
        if rid > _U32_MAX:
            raise RuntimeError("2^32-1 requests in flight")
        self._next_id = rid + 1
        return rid

    # -- outgoing: one write in flight, each started by the one before ----------------------
    def _queue(self, data: bytes) -> None:
        if self._writing is None and not self._writes_over:
            self._steps = self._call.write(data).__await__()
            self._step()
        else:
            self._outbox.append(data)

    def _step(self, _: Any = None) -> None:
        """Run the write in flight (or the half-close) as far as it goes without waiting, on
        this stack; it runs on here when what it waits for is done; when it is over, the
        next write starts. A task's work, minus what a coroutine nobody awaits needs: no
        task, no future of its own (``next`` with a default: no StopIteration, as
        ``_eager``). ``_eager.start_eagerly`` would do the same with a ``Continuation``, a
        Future per write: 226,700 against 219,000 client instructions a send (callgrind,
        stop 31), so this hand-stepped copy stays."""
        try:
            waiting: Any = next(self._steps, FINISHED)  # type: ignore[arg-type]
        except asyncio.CancelledError:  # close() cancelled it
            self._writing = None
            self._write_failed(None)
            return
        except Exception as exc:
            self._writing = None
            self._write_failed(exc)
            return
        if waiting is FINISHED:
            self._writing = None
            if self._writes_over:  # the half-close went out
                self._write_failed(None)
            elif self._outbox or self._flushed is not None:
                self._write_next()
            return
        if waiting is None:  # a bare yield: on at the next loop turn
            waiting = self._loop.create_future()  # type: ignore[union-attr]
            waiting.set_result(None)
        self._writing = waiting
        waiting.add_done_callback(self._step)

    def _write_next(self) -> None:
        """Start the oldest queued write; with none queued, half-close if close() asks."""
        if self._outbox:
            self._steps = self._call.write(self._outbox.popleft()).__await__()
        elif self._flushed is not None:
            self._writes_over = True
            self._steps = self._call.done_writing().__await__()
        else:
            return
        self._step()

    def _write_failed(self, exc: BaseException | None) -> None:
        """Nothing more is written: the half-close went out (``exc`` None), or a write failed
        because the call is over, as the reader will say (or, if not, a bug of ours)."""
        self._writes_over = True
        self._outbox.clear()
        flushed = self._flushed
        if flushed is not None and not flushed.done():
            flushed.set_result(None)
        if exc is None or self._closing:
            return
        if isinstance(exc, grpc.aio.AioRpcError | asyncio.InvalidStateError):
            log.debug("the stream ended while writing: %r", exc)  # the reader says why
            return
        log.error("writing the stream failed", exc_info=exc)
        self._call.cancel()
        self._lost(f"the client failed: {exc!r}")

    # -- incoming --------------------------------------------------------------------------
    async def _read(self, call: Any) -> None:
        """The one reader of the call: pushes to the events, replies to their requests."""
        assert self._events is not None
        delivered, notified = self._events.delivered, self._events.notified
        push_of = cv.push_of
        waiting, free_ids, heappush = self._waiting, self._free_ids, heapq.heappush
        read, eof = call.read, grpc.aio.EOF
        try:
            while True:
                message = await read()
                if message is eof:
                    self._ended(None)  # OK: the server answered our half-close
                    return
                kind = message.WhichOneof("message")
                if kind in PUSHES:
                    event = push_of(kind, getattr(message, kind))
                    if isinstance(event, Delivery):
                        delivered(event)
                    elif event is not None:
                        notified(event)
                    continue
                rid = message.request_id
                entry = waiting.pop(rid, None)
                if entry is None:
                    if kind == "error":  # a failed Ack (id 0): nobody waits for it
                        log.warning("the server refused an ACK: %s", message.error.message)
                    else:
                        log.warning("a reply to no request (id %d, %s): ignored", rid, kind)
                    continue
                heappush(free_ids, rid)
                future, field, result, cls = entry
                if kind == field:
                    try:
                        future.set_result(result(getattr(message, field)))
                    except InvalidStateError:
                        pass  # the caller stopped waiting (cancelled)
                    except Exception as exc:  # a reply we cannot read: this caller's error
                        if not future.done():
                            future.set_exception(exc)
                elif future.done():
                    pass  # the caller stopped waiting (cancelled)
                elif kind == "error":
                    future.set_exception(error_of(message.error))
                else:
                    future.set_exception(
                        ConnectionError(f"the server answered a {cls.__name__} with {kind}")
                    )
        except grpc.aio.AioRpcError as err:
            self._ended(err)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a bug of ours: never leave callers waiting for ever
            log.exception("reading the stream failed")
            self._lost(f"the client failed: {exc!r}")

    def _lost(self, text: str) -> None:
        """A bug of ours ended the stream: fail every caller, tell the events once."""
        first = self._gone is None
        self._over(ConnectionError(text))
        if first and self._events is not None and not self._closing:
            self._events.connection_lost(text)

    def _ended(self, err: grpc.aio.AioRpcError | None) -> None:
        """The call is over: say why, once, unless we closed it ourselves."""
        reason = reason_of(err, by_code=False) if err is not None else None
        events = self._events
        if reason is not None and reason.ends is not None:
            text = reason.ends.value
            self._over(SessionClosed(f"session ended: {text}"))
            if events is not None and not self._closing:
                events.session_ended(text)
                events.connection_lost(text)
            return
        if err is None:
            text = "the server ended the stream"
        elif reason is not None:
            text = f"the server ended the stream: {err.details()}"
        else:
            text = f"gRPC {err.code().name}: {err.details()}"
        self._over(ConnectionError(f"connection closed: {text}"))
        if events is not None and not self._closing:
            events.connection_lost(text)

    def _over(self, error: Exception) -> None:
        """No more replies can come: fail every waiting request with ``error``."""
        if self._gone is None:
            self._gone = error
        waiting, self._waiting = self._waiting, {}
        for future, *_ in waiting.values():
            if not future.done():
                future.set_exception(error)
        self._outbox.clear()  # (never to be written)


__all__ = ["CODEC", "METHOD", "GrpcStreamTransport", "error_of", "open_client"]
