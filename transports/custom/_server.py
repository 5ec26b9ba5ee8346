"""The asyncio server of the custom protocol: a thin driver around the codec and ChatService.

Theory of operation (section numbers refer to PROTOCOL.md)
  * One task per connection (asyncio's client_connected_cb) reads, feeds the codec and handles
    each request to completion before it decodes the next, so replies leave in request order
    and no task is created per message (section 8).
  * A successful SIGNUP/LOGIN starts one pump task that drains ``session.deliveries()`` into
    DELIVER frames. Both writers respect backpressure: past HIGH_WATER buffered bytes they
    wait for the client to read. A client that reads nothing for STALL_TIMEOUT while we have
    data for it, or whose session the service ended because its queue overflowed, is a slow
    consumer: its session ends (its messages stay pending) and the connection closes.
  * Frames are not written one by one: ``_reply`` collects them and one ``writelines`` per
    loop iteration (or per FLUSH_AT bytes) hands them to the socket, so a batch of pipelined
    requests, or a backlog of deliveries, costs one system call instead of one per frame.
  * Every way to end a connection goes through ``_begin_close``: the last frame (an ERROR, a
    DELETED, a reply to a failed LOGIN) is written, our side is shut for writing, and input is
    read and discarded for up to LINGER seconds. Closing with unread input would make the
    kernel send a RST, which can destroy that last frame before the client reads it.
  * Whatever happens, ``_finish`` cancels the pump, calls ``service.close_session`` and closes
    the socket. Nothing raised by one connection reaches the loop or any other session.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any

from core.errors import ChatError
from core.service import ChatService
from core.session import Session
from core.types import CloseReason
from transports.custom._codec import Connection, Role
from transports.custom._errors import code_for_close, code_for_error
from transports.custom._events import (
    NEED_DATA,
    Accounts,
    Ack,
    ConnectionClosed,
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
    HANDSHAKE_TIMEOUT,
    MAX_BODY,
    MAX_FRAME,
    MAX_RECIPIENTS,
    ErrorCode,
    ProtocolError,
)

log = logging.getLogger(__name__)

READ_SIZE = 64 * 1024
#: Collected output is handed to the socket at the end of the loop iteration, or at once when
#: it reaches this size (so one burst of requests with large replies cannot pile up).
FLUSH_AT = 64 * 1024
#: Bytes we let pile up unread in one connection's write buffer before its writers wait: four
#: maximal DELIVERs or thousands of small ones. (Nginx's default send buffer is 4-8 pages;
#: asyncio's default high-water mark is 64 KiB.)
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

    def __init__(self, service: ChatService, handshake_timeout: float) -> None:
        self.service = service
        self.address: tuple[str, int] = ("", 0)
        self._handshake_timeout = handshake_timeout
        self._server: asyncio.Server | None = None
        self._connections: dict[asyncio.Task[Any], _ServerConnection] = {}

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        connection = _ServerConnection(self.service, reader, writer, self._handshake_timeout)
        self._connections[task] = connection
        try:
            await connection.run()
        finally:
            del self._connections[task]

    async def close(self) -> None:
        """Stop listening, tell every client (ERROR SHUTDOWN), close every connection."""
        if self._server is not None:
            self._server.close()
        for connection in list(self._connections.values()):
            connection.shutdown()
        tasks = list(self._connections)
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=LINGER + 1)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()


async def start_server(
    service: ChatService,
    host: str = "127.0.0.1",
    port: int = 0,
    *,
    handshake_timeout: float = HANDSHAKE_TIMEOUT,
) -> CustomServer:
    """Listen on (host, port) and serve ``service`` over the custom protocol."""
    server = CustomServer(service, handshake_timeout)
    server._server = await asyncio.start_server(server._accept, host, port, limit=READ_SIZE)
    bound = server._server.sockets[0].getsockname()
    server.address = (bound[0], bound[1])
    return server


class _ServerConnection:
    def __init__(
        self,
        service: ChatService,
        reader: asyncio.StreamReader,
        writer: asyncio.StreamWriter,
        handshake_timeout: float,
    ) -> None:
        self._service = service
        self._reader = reader
        self._writer = writer
        self._transport = writer.transport
        self._transport.set_write_buffer_limits(high=HIGH_WATER)
        self._handshake_timeout = handshake_timeout
        self._loop = asyncio.get_running_loop()
        self._out: list[bytes] = []  # frames not yet handed to the transport
        self._out_size = 0
        self._codec = Connection(Role.SERVER)
        self._session: Session = service.open_session()
        self._closing = False
        self._deadline: asyncio.Timeout | None = None
        self._epoch = 0  # bumps at each login/logout; a pump of an older epoch writes nothing
        self._pumps: set[asyncio.Task[None]] = set()
        self._peer = writer.get_extra_info("peername")
        self._handlers = {
            Signup: self._signup,
            Login: self._login,
            Logout: self._logout,
            ListAccounts: self._list_accounts,
            Send: self._send,
            Ack: self._ack,
            DeleteAccount: self._delete_account,
            Ping: self._ping,
        }

    async def run(self) -> None:
        try:
            async with asyncio.timeout(self._handshake_timeout) as self._deadline:
                await self._read_loop()
        except TimeoutError:
            if not self._closing:
                self._end_with(ErrorCode.BAD_HANDSHAKE, "no complete HELLO within the time limit")
        except ConnectionError:
            pass
        except Exception:  # a bug of ours: log it, never let it reach the loop
            log.exception("connection %s failed", self._peer)
        finally:
            await self._finish()

    async def _read_loop(self) -> None:
        codec, reader = self._codec, self._reader
        while True:
            data = await reader.read(READ_SIZE)
            if self._closing:
                if data:
                    continue  # lingering: discard until the client closes or LINGER passes
                return
            codec.receive_data(data)  # b"": the client closed its side
            while not self._closing:
                try:
                    event = codec.next_event()
                except ProtocolError as exc:  # (at the end of the stream: a truncated frame)
                    log.info("protocol error from %s: %r", self._peer, exc)
                    self._end_with(exc.code, exc.message)
                    break
                if event is NEED_DATA:
                    break
                if isinstance(event, ConnectionClosed):
                    return  # every request was answered; the client is done
                await self._handle(event)
            if not data:
                return

    async def _handle(self, event: Any) -> None:
        if isinstance(event, Hello):
            assert self._deadline is not None
            self._deadline.reschedule(None)
            self._reply(Welcome(self._codec.version or 1, MAX_FRAME, MAX_BODY, MAX_RECIPIENTS))
            return
        try:
            reply = await self._handlers[type(event)](event)
        except ChatError as exc:
            reply = Error(getattr(event, "request_id", 0), code_for_error(exc), str(exc))
        except Exception:
            log.exception("request %r from %s failed", type(event).__name__, self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")
            return
        if reply is not None:
            self._reply(reply)
        if self._session.closed:
            self._session_ended(notice=not isinstance(reply, Deleted))
        elif self._transport.get_write_buffer_size() > HIGH_WATER and not await self._drain():
            self._slow_consumer()

    # -- requests: call the service, return the reply (no await after the service call, so
    # -- the reply is written before the pump can observe what the call changed) -------------
    async def _signup(self, event: Signup) -> SignedUp:
        result = await self._service.signup(self._session, event.username, event.password)
        self._start_pump()
        return SignedUp(event.request_id, result.pending)

    async def _login(self, event: Login) -> LoggedIn:
        result = await self._service.login(self._session, event.username, event.password)
        self._start_pump()
        return LoggedIn(event.request_id, result.pending)

    async def _logout(self, event: Logout) -> LoggedOut:
        await self._service.logout(self._session)
        self._epoch += 1  # no DELIVER of the ended login may follow LOGGED_OUT
        return LoggedOut(event.request_id)

    async def _list_accounts(self, event: ListAccounts) -> Accounts:
        page = await self._service.list_accounts(
            self._session, event.pattern, event.after, event.limit
        )
        return Accounts(event.request_id, page.usernames, page.more)

    async def _send(self, event: Send) -> Sent:
        result = await self._service.send(self._session, event.recipients, event.body)
        return Sent(
            event.request_id, result.message_id, result.sent_at_ms, result.unknown_recipients
        )

    async def _ack(self, event: Ack) -> None:
        await self._service.ack(self._session, event.message_ids)

    async def _delete_account(self, event: DeleteAccount) -> Deleted:
        await self._service.delete_account(self._session, event.username)
        return Deleted(event.request_id)

    async def _ping(self, event: Ping) -> Pong:
        return Pong(event.request_id, event.payload)

    # -- deliveries ----------------------------------------------------------------------------
    def _start_pump(self) -> None:
        self._epoch += 1
        for old in self._pumps:
            old.cancel()
        pump = asyncio.create_task(self._pump(self._epoch), name=f"custom-pump-{self._peer}")
        self._pumps.add(pump)
        pump.add_done_callback(self._pumps.discard)

    async def _pump(self, epoch: int) -> None:
        session = self._session
        try:
            async with contextlib.aclosing(session.deliveries()) as deliveries:
                async for d in deliveries:
                    if epoch != self._epoch or self._closing:
                        return
                    self._reply(Deliver(d.message_id, d.sent_at_ms, d.sender, d.body))
                    if (
                        self._transport.get_write_buffer_size() > HIGH_WATER
                        and not await self._drain()
                    ):
                        self._slow_consumer()
                        return
            if session.closed and epoch == self._epoch:
                self._session_ended(notice=True)
        except ConnectionError:
            pass
        except Exception:
            log.exception("delivery to %s failed", self._peer)
            self._end_with(ErrorCode.INTERNAL, "internal server error")

    async def _drain(self) -> bool:
        """Backpressure. False if the client is a slow consumer (see the module docstring)."""
        self._flush()
        size = self._transport.get_write_buffer_size()
        if size <= HIGH_WATER or self._closing:
            return True
        loop = asyncio.get_running_loop()
        give_up = loop.time() + STALL_TIMEOUT
        while True:
            try:
                async with asyncio.timeout(STALL_CHECK):
                    await self._writer.drain()
                return True
            except TimeoutError:
                pass
            now = self._transport.get_write_buffer_size()
            if now < size:
                size, give_up = now, loop.time() + STALL_TIMEOUT
            elif self._session.closed or self._closing or loop.time() >= give_up:
                return False

    def _slow_consumer(self) -> None:
        if self._closing:
            return
        if not self._session.closed:  # (else the service ended it already, for its reason)
            log.warning("%s reads too slowly; ending its session", self._peer)
            self._service.close_session(self._session, CloseReason.SLOW_CONSUMER)
        self._session_ended(notice=True)

    # -- ending ------------------------------------------------------------------------------
    def shutdown(self) -> None:
        """The server is stopping: tell the client, then close."""
        self._end_with(ErrorCode.SHUTDOWN, CloseReason.SHUTDOWN.value)

    def _session_ended(self, *, notice: bool) -> None:
        """The service ended our session: push its reason (section 9), then close."""
        reason = self._session.close_reason
        code = code_for_close(reason)
        if notice and code is not None and reason is not None:
            self._end_with(code, reason.value)
        else:
            self._begin_close()

    def _reply(self, event: Any) -> None:
        if self._closing:
            return
        data = self._codec.send(event)
        if not self._out:
            self._loop.call_soon(self._flush)
        self._out.append(data)
        self._out_size += len(data)
        if self._out_size >= FLUSH_AT:
            self._flush()

    def _flush(self) -> None:
        if self._out and not self._transport.is_closing():
            self._writer.writelines(self._out)
        self._out.clear()
        self._out_size = 0

    def _end_with(self, code: ErrorCode, message: str) -> None:
        """Send a connection-ending ERROR on request id 0 and close."""
        self._reply(Error(0, code, message))
        self._begin_close()

    def _begin_close(self) -> None:
        if self._closing:
            return
        self._flush()
        self._closing = True
        current = asyncio.current_task()
        for pump in self._pumps:
            if pump is not current:
                pump.cancel()
        if self._transport.can_write_eof() and not self._transport.is_closing():
            with contextlib.suppress(OSError, RuntimeError):
                self._writer.write_eof()
        if self._deadline is not None and not self._deadline.expired():
            self._deadline.reschedule(asyncio.get_running_loop().time() + LINGER)

    async def _finish(self) -> None:
        self._flush()
        self._closing = True
        self._service.close_session(self._session)
        pumps = list(self._pumps)
        for pump in pumps:
            pump.cancel()
        self._writer.close()
        try:
            async with asyncio.timeout(CLOSE_TIMEOUT):
                await asyncio.gather(*pumps, return_exceptions=True)
                await self._writer.wait_closed()
        except Exception:  # timed out (the client reads nothing) or the connection broke
            self._transport.abort()
        except asyncio.CancelledError:  # the server is closing and ran out of patience
            self._transport.abort()
            raise


__all__ = ["CustomServer", "start_server"]
