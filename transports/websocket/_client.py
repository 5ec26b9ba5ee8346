"""The websocket transport's client side: a ``core.client.ClientTransport``.

Theory of operation (section numbers refer to CONTRACT.md)
  * ``connect`` opens ``ws://host:port/chat`` offering the subprotocol; one reader task then
    reads every server message and dispatches it at once: a reply resolves the future of its
    request id, a ``deliver`` push goes to ``events.delivered``, a ``session_ended`` notice to
    ``events.session_ended``.
  * Requests can be pipelined: each takes the next id and keeps a future until its reply. An
    ack has no success reply (section 6.6), so it is sent and forgotten; should the server
    answer one with an error, the reply names an id nobody waits for, and is only logged.
  * When the session ends, requests still waiting can get no reply: they fail with
    SessionClosed; when the connection goes, with ConnectionError. The close code says why
    (section 9), which ``connection_lost`` reports.
  * The client sends no pings (a browser cannot either); the library answers the server's.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from typing import Any, TypeVar

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus
from websockets.typing import Subprotocol

from core import requests as rq
from core.client import ClientEvents
from core.errors import SessionClosed
from core.types import CloseReason, Delivery, MessagesDeleted, ReadMarker, SentCopy
from transports import _wrong_port
from transports._tls import ClientTls, describe_failure, hostname_for, not_tls
from transports.websocket._client_codec import (
    BadServerMessage,
    Reply,
    ServerMessage,
    decode_result,
    decode_server_message,
    encode_request,
)
from transports.websocket._messages import (
    MAX_SERVER_MESSAGE_BYTES,
    OFFERS,
    PATH,
    SUBPROTOCOL_V2_2,
    error_for_code,
    reason_for_close,
    reason_for_notice,
)

log = logging.getLogger(__name__)

R = TypeVar("R")
OPEN_TIMEOUT = 10.0
CLOSE_TIMEOUT = 5.0


class WebSocketTransport:
    """One WebSocket connection to a wirechat server at ``address`` = (host, port)."""

    def __init__(
        self,
        address: tuple[str, int],
        *,
        subprotocol: str = SUBPROTOCOL_V2_2,
        tls: ClientTls | None = None,
    ) -> None:
        self.address = address
        self.tls = tls
        host, port = address
        host = f"[{host}]" if ":" in host else host  # (an IPv6 address in a URL)
        self.uri = f"{'wss' if tls is not None else 'ws'}://{host}:{port}{PATH}"
        self.subprotocol = subprotocol
        #: What the handshake offers: 2.2 with 2 behind it, else the one (messages.OFFERS).
        self.offer = OFFERS.get(subprotocol, (subprotocol,))
        self._ws: ClientConnection | None = None
        self._events: ClientEvents | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ids = itertools.count(1)
        self._waiting: dict[int, tuple[rq.Request[Any], asyncio.Future[Any]]] = {}
        self._ended: str | None = None  # the session-end reason the server gave
        self._closing = False  # we closed it ourselves
        self._gone: str | None = None  # why the connection is gone

    async def connect(self, events: ClientEvents) -> None:
        """Open the connection and the WebSocket handshake; ConnectionError if refused."""
        self._events = events
        tls = self.tls
        wss: dict[str, Any] = {}
        if tls is not None:
            wss = {"ssl": tls.context(), "server_hostname": hostname_for(tls, self.address[0])}
        try:
            self._ws = await connect(
                self.uri,
                **wss,
                subprotocols=[Subprotocol(p) for p in self.offer],
                compression=None,
                max_size=MAX_SERVER_MESSAGE_BYTES,
                ping_interval=None,
                open_timeout=OPEN_TIMEOUT,
                close_timeout=CLOSE_TIMEOUT,
            )
        except InvalidStatus as exc:
            body = exc.response.body.decode("utf-8", "replace").strip() if exc.response else ""
            raise ConnectionError(f"the server refused the WebSocket upgrade: {body}") from None
        except (InvalidHandshake, TimeoutError, OSError, EOFError) as exc:
            # most likely another protocol's port, or TLS on one side only: say which
            secure = tls is not None
            told = describe_failure(exc, self.address) if secure else None
            if told is not None:  # TLS, but a certificate we cannot trust
                raise _wrong_port.WrongPort(told) from None
            if isinstance(exc, OSError) and not not_tls(exc):
                raise  # refused, unreachable: the caller says so
            found = await _wrong_port.probe(*self.address, tls=tls)
            wrong = _wrong_port.telling(found, None, tls=secure) and found != "refused"
            if wrong and (secure or found != "http1"):
                message = _wrong_port.explain(self.address, "WebSocket", found, tls=secure)
                raise _wrong_port.WrongPort(message) from None
            if isinstance(exc, TimeoutError):
                raise ConnectionError(f"no WebSocket handshake with {self.uri}") from None
            raise ConnectionError(f"the WebSocket handshake failed: {exc}") from None
        self._reader = asyncio.create_task(self._read(self._ws), name="websocket-reader")

    async def close(self) -> None:
        """Close the connection (idempotent); reports ``connection_lost(None)``."""
        self._closing = True
        ws = self._ws
        if ws is not None:
            await ws.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)

    async def request(self, request: rq.Request[R]) -> R:
        """Send ``request``; its reply's result, or the error it maps to (section 8)."""
        ws = self._ws
        if ws is None or self._gone is not None:
            raise ConnectionError(f"not connected: {self._gone or 'call connect() first'}")
        rid = next(self._ids)
        text = encode_request(rid, request)
        if isinstance(request, rq.Ack):
            await self._send(ws, text)
            return None  # type: ignore[return-value]
        future: asyncio.Future[R] = asyncio.get_running_loop().create_future()
        self._waiting[rid] = (request, future)
        try:
            await self._send(ws, text)
            return await future
        finally:
            self._waiting.pop(rid, None)

    async def _send(self, ws: ClientConnection, text: str) -> None:
        try:
            await ws.send(text)
        except ConnectionClosed:
            raise ConnectionError(f"connection closed: {self._why_closed(ws)}") from None

    # -- incoming ------------------------------------------------------------------------------
    async def _read(self, ws: ClientConnection) -> None:
        failure: str | None = None
        try:
            async for message in ws:
                if isinstance(message, bytes):
                    raise BadServerMessage("the server sent a binary frame")
                self._dispatch(decode_server_message(message))
        except ConnectionClosed:
            pass
        except BadServerMessage as exc:
            failure = f"the server broke the contract: {exc}"
            log.warning("%s", failure)
            await ws.close(1002, "unreadable message")
        except Exception as exc:  # a bug of ours; the connection is of no use now
            log.exception("the websocket client failed")
            failure = f"the client failed: {exc!r}"
            await ws.close(1011, "client error")
        finally:
            reason = None if self._closing and failure is None else failure or self._why_closed(ws)
            self._gone = reason or "closed by the client"
            self._fail_waiting(ConnectionError(f"connection closed: {self._gone}"))
            if self._events is not None:
                self._events.connection_lost(reason)

    def _dispatch(self, message: ServerMessage) -> None:
        events = self._events
        assert events is not None
        if message is None:
            return  # a push this version does not know (CONTRACT.md section 3)
        if isinstance(message, Delivery):
            events.delivered(message)
        elif isinstance(message, SentCopy | ReadMarker | MessagesDeleted):
            events.notified(message)
        elif isinstance(message, Reply):
            waiter = self._waiting.pop(message.request_id, None)  # type: ignore[arg-type]
            if waiter is None:
                # (a failed ack, or a reply to a request whose caller gave up)
                log.debug("reply to no waiting request: %r", message)
                return
            request, future = waiter
            if future.done():
                return
            if message.ok is not None:
                try:
                    result = decode_result(request, message.ok)
                except BadServerMessage as exc:
                    future.set_exception(ConnectionError(str(exc)))
                    raise
                future.set_result(result)
            else:
                future.set_exception(error_for_code(message.code, message.message))
        else:
            reason = reason_for_notice(message.code)
            self._ended = reason.value if reason is not None else message.message
            self._fail_waiting(SessionClosed(f"session ended: {self._ended}"))
            events.session_ended(self._ended)

    def _fail_waiting(self, exc: Exception) -> None:
        waiting, self._waiting = self._waiting, {}
        for _, future in waiting.values():
            if not future.done():
                future.set_exception(exc)

    def _why_closed(self, ws: ClientConnection) -> str:
        """Why the server closed, from its notice or its close code and reason (section 9)."""
        if self._ended is not None:
            return self._ended
        code, text = ws.close_code, ws.close_reason
        reason = reason_for_close(code)
        if reason is not None:
            return reason.value
        if code is None or code == 1006:
            return CloseReason.DISCONNECTED.value
        return f"the server closed the connection ({code}{': ' + text if text else ''})"


__all__ = ["WebSocketTransport"]
