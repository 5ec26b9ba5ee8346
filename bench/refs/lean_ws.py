"""lean_ws: the lean pipelined load generator of the websocket transport and its floor,
``ws_echo`` (bench/refs/ws_echo.py).

Why. The websocket load rows were driven by the product's ChatClient over the ``websockets``
asyncio client: 74-114 µs of client CPU a send, at most 4 x 8 sends outstanding, and the
``ws_echo`` row was the generator's limit, not the server's. This is bench/refs/lean_load.py's
design over RFC 6455 frames:

* each sender is its own connection; the set-up goes through well-kept code: the opening
  handshake through the ``websockets`` library's sans-IO client protocol (``ClientProtocol``:
  no permessage-deflate, the product's subprotocol), the SIGNUP through the transport's own
  request encoder and reply decoder (transports/websocket/_client_codec.py);
* after it the connection is driven raw: the SEND of every request id is encoded once, its
  JSON text by the transport's encoder (the product client's text) and its frame by the same
  ``ClientProtocol`` (``send_text``: a masked client frame, RFC 6455 section 5.3), and kept
  (``frames[rid]``). Reusing a masked frame reuses its masking key: the key guards a browser's
  intermediaries against a page's scripted bytes; a bench client sending its own fixed
  requests has nothing for it to guard, and the server unmasks whatever key it is given;
* the server answers one connection's requests in order (CONTRACT.md section 7), so a reply
  is matched by popping the connection's FIFO of (intended, sent, request id): a reply frame
  is read no further than its header and the start of its text, compared with the reply
  expected for the request id due (``{"id":7,"ok"``); anything else is looked at closer: a
  push (``{"push"``) answers nothing, an error reply with the due id counts in ``errors``,
  another id breaks the step (out of order). A ping is answered with a pong, as RFC 6455
  requires (the server pings an idle connection every 20 s);
* answered request ids are reused before new ones, timings go to plain lists, and the
  warm-up, closed and open loops are lean_load's (``warm_up``, ``frames_closed_loop``,
  ``frames_open_loop`` over bench/loadgen.py's ``dispatch_schedule``).

Against ``ws_echo`` the senders only open the WebSocket (no sign-up) and send the same SEND
text; the echo comes back as a text message starting ``{"id":7,"op"``, which is the reply.

Its own ceiling (bench/loadgen_scene.py) is measured against ``null_echo``, which writes the
masked frames back as they came: the walk then reads a masked header (4 bytes more) and
compares the expected reply's masked bytes (the frame's own key and text), the same work per
reply as against the server, with a responder cheaper than any WebSocket server.
"""

from __future__ import annotations

import asyncio
import collections
import time
from collections.abc import Sequence
from typing import Any, cast

from websockets.client import ClientProtocol
from websockets.frames import Frame, Opcode
from websockets.http11 import Response
from websockets.protocol import State
from websockets.typing import Subprotocol
from websockets.uri import parse_uri

from bench.loadgen import Timings, close
from bench.refs.lean_load import (
    MAX_ERRORS,
    SETUP_TIMEOUT_S,
    Sender,
    run_lean_step,
)
from core import requests as rq
from transports.websocket._client_codec import (
    BadServerMessage,
    Reply,
    decode_server_message,
    encode_request,
)
from transports.websocket._messages import MAX_SERVER_MESSAGE_BYTES, PATH, SUBPROTOCOL

#: The first byte of a final text frame (FIN, opcode 1): every reply and push.
TEXT_FIN = 0x81
#: What a reply to request ``rid`` starts with, per kind of target (its text after the id).
CHAT, ECHO, NULL = "chat", "echo", "null"
_AFTER_ID = {CHAT: b',"ok"', ECHO: b',"op"', NULL: b',"op"'}
_PUSH = b'{"push"'
_ID = b'{"id":'


def speaks_ws(transport: str) -> bool:
    """Whether ``transport`` is the websocket transport (its registry entry's package is
    transports.websocket, whose contract this generator speaks)."""
    from transports import registry

    entry = registry.BY_NAME.get(transport)
    return entry is not None and entry.wire and entry.package == "transports.websocket"


def _header_bytes(frame: bytes) -> int:
    """The bytes of ``frame``'s header before its masking key (2, 4 or 10: RFC 6455 5.2)."""
    length = frame[1] & 0x7F
    return 2 if length < 126 else 4 if length == 126 else 10


class LeanWs(asyncio.Protocol):
    """One WebSocket: handshake and sign-up through ``ClientProtocol`` and the transport's
    codec, then SEND frames by request id and a FIFO of (intended, sent, request id)."""

    def __init__(self, timings: Timings, kind: str, uri: str, subprotocol: str | None) -> None:
        self.timings = timings
        self.kind = kind
        offered = [Subprotocol(subprotocol)] if subprotocol else None
        state = State.OPEN if kind == NULL else State.CONNECTING  # null_echo: no handshake
        self.proto = ClientProtocol(
            parse_uri(uri), subprotocols=offered, max_size=MAX_SERVER_MESSAGE_BYTES, state=state
        )
        self.pending: collections.deque[tuple[int, int, int]] = collections.deque()
        self.free: list[int] = []  # answered request ids, reused before new ones
        self.frames: list[bytes] = [b""]  # frames[rid]: the SEND frame with that request id
        #: expected[rid]: the bytes a reply to ``rid`` starts with, from the end of its frame
        #: header (masked echo: from its masking key).
        self.expected: list[bytes] = [b""]
        self.recipients: tuple[str, ...] = ()
        self.body = ""
        self.transport: asyncio.Transport | None = None
        self.rest = b""  # the start of a frame not yet complete
        self.lost: str | None = None
        self.errors = 0  # requests answered by an error reply
        self.first_error: str | None = None
        #: Closed loop: on each reply, send the same request id's frame again at once.
        self.refill = False
        self._waiter: asyncio.Future[Any] | None = None  # set-up: the event awaited
        self._raw = False  # set-up over: frames are walked raw

    # -- set-up ------------------------------------------------------------------------------
    def _flush(self) -> None:
        assert self.transport is not None
        for chunk in self.proto.data_to_send():
            if chunk:
                self.transport.write(chunk)

    async def _await(self, what: str) -> Any:
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            return await asyncio.wait_for(self._waiter, SETUP_TIMEOUT_S)
        except TimeoutError:
            raise ConnectionError(f"no {what} within {SETUP_TIMEOUT_S:g} s") from None
        finally:
            self._waiter = None

    async def handshake(self) -> None:
        """The opening handshake; ConnectionError if the server refused it."""
        proto = self.proto
        proto.send_request(proto.connect())
        self._flush()
        response = await self._await("handshake response")
        if proto.handshake_exc is not None:
            raise ConnectionError(f"the WebSocket handshake failed: {proto.handshake_exc}")
        assert isinstance(response, Response)

    async def call(self, request_id: int, request: rq.Request[Any]) -> dict[str, Any]:
        """Set-up only: one request through the transport's codec; its reply's ``ok`` members
        (pushes are skipped). ConnectionError if the server answered with an error."""
        self.proto.send_text(encode_request(request_id, request).encode())
        self._flush()
        reply = await self._await(f"reply to {type(request).__name__}")
        if reply.ok is None:
            raise ConnectionError(f"the server refused: {reply.code} {reply.message}")
        return cast(dict[str, Any], reply.ok)

    def sending(self, recipients: tuple[str, ...], body: str) -> None:
        """From now on the frames are walked raw, and requests are SENDs of ``body``."""
        self.recipients, self.body = recipients, body
        self._raw = True

    def frame_id(self) -> int:
        """A free request id (an answered one if any, else the next new one, whose frame and
        expected reply are encoded now)."""
        if self.free:
            return self.free.pop()
        rid = len(self.frames)
        self.proto.send_text(encode_request(rid, rq.Send(self.recipients, self.body)).encode())
        frame = b"".join(self.proto.data_to_send())
        self.frames.append(frame)
        start = _header_bytes(frame)
        plain = b"%s%d%s" % (_ID, rid, _AFTER_ID[self.kind])
        # null_echo sends the masked frame back: what it starts with is the key, then the
        # masked text (this frame's own bytes); the servers send their text unmasked.
        self.expected.append(frame[start : start + 4 + len(plain)] if self.kind == NULL else plain)
        return rid

    # -- asyncio.Protocol --------------------------------------------------------------------
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self.transport = cast(asyncio.Transport, transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = self.lost or (
            f"{type(exc).__name__}: {exc}" if exc else "the server closed the connection"
        )
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(ConnectionError(self.lost))

    def data_received(self, data: bytes) -> None:
        if not self._raw:
            self._setup_data(data)
            return
        if self.rest:
            data = self.rest + data
        size = len(data)
        pos = 0
        now = time.perf_counter_ns()
        t = self.timings
        pending, free, frames, expected = self.pending, self.free, self.frames, self.expected
        refill = self.refill
        out: list[bytes] = []
        replies = 0
        while pos + 2 <= size:
            first = data[pos]
            length = data[pos + 1]
            at = pos + 2
            masked = length & 0x80  # (only null_echo's echo of our own frames)
            length &= 0x7F
            if length >= 126:
                wide = 2 if length == 126 else 8
                if at + wide > size:
                    break
                length = int.from_bytes(data[at : at + wide], "big")
                at += wide
            end = at + length + (4 if masked else 0)
            if end > size:
                break
            pos = end
            if first != TEXT_FIN:
                if not self._control(first, data[at:end]):
                    return
                continue
            if pending and data.startswith(expected[pending[0][2]], at):
                intended, sent, rid = pending.popleft()
                t.latency.append(now - intended)
                t.service.append(now - sent)
            elif data.startswith(_PUSH, at):
                continue  # a push answers no request
            else:
                rid = self._not_expected(data[at:end], bool(masked))
                if rid < 0:
                    return
                if self.errors > MAX_ERRORS:
                    refill = self.refill = False
            replies += 1
            if refill:
                pending.append((now, now, rid))
                out.append(frames[rid])
            else:
                free.append(rid)
        self.rest = data[pos:] if pos < size else b""
        if replies:
            t.last_done_ns = now
        if out and self.transport is not None:
            self.transport.write(b"".join(out))

    def _not_expected(self, payload: bytes, masked: bool) -> int:
        """A text message that is not the reply due: an error reply to the due request (its
        id, counted in ``errors``), else the step is broken (-1)."""
        if not self.pending:
            self._broken(f"a reply while no request was outstanding: {payload[:60]!r}")
            return -1
        due = self.pending[0][2]
        if masked or not payload.startswith(_ID):
            self._broken(f"the reply to request id {due} was due, not {payload[:60]!r}")
            return -1
        try:
            reply = decode_server_message(payload.decode("utf-8", "replace"))
        except BadServerMessage:  # (ws_echo: another request's echo)
            reply = None
        if not isinstance(reply, Reply) or reply.request_id != due:
            self._broken(f"the reply to request id {due} was due (out of order): {payload[:60]!r}")
            return -1
        rid = self.pending.popleft()[2]
        self.errors += 1
        if self.first_error is None:
            self.first_error = f"{reply.code} answered request id {rid}: {reply.message}"
        return rid

    def _control(self, first: int, payload: bytes) -> bool:
        """A frame other than a final text frame: a ping is answered, a pong ignored, a close
        or anything else ends the step (False)."""
        opcode = first & 0x0F
        if opcode == Opcode.PING.value and self.transport is not None:
            self.transport.write(Frame(Opcode.PONG, payload).serialize(mask=True))
            return True
        if opcode == Opcode.PONG.value:
            return True
        if opcode == Opcode.CLOSE.value:
            code = int.from_bytes(payload[:2], "big") if len(payload) >= 2 else None
            self._broken(f"the server closed the WebSocket ({code}: {payload[2:80]!r})")
        else:
            self._broken(f"an unexpected frame (first byte 0x{first:02X})")
        return False

    def _setup_data(self, data: bytes) -> None:
        proto = self.proto
        proto.receive_data(data)
        for event in proto.events_received():
            waiter = self._waiter
            if isinstance(event, Response):
                if waiter is not None and not waiter.done():
                    waiter.set_result(event)
            elif isinstance(event, Frame) and event.opcode is Opcode.TEXT:
                try:
                    message = decode_server_message(bytes(event.data).decode())
                except BadServerMessage as exc:
                    if waiter is not None and not waiter.done():
                        waiter.set_exception(ConnectionError(str(exc)))
                    continue
                if isinstance(message, Reply) and waiter is not None and not waiter.done():
                    waiter.set_result(message)
        if self.transport is not None:
            self._flush()  # (the library's pong to a ping, its close reply)

    def _broken(self, why: str) -> None:
        """The reply stream cannot be trusted: the step ends with this error."""
        self.lost = self.lost or why
        self.refill = False
        if self.transport is not None:
            self.transport.close()


# -- connecting ------------------------------------------------------------------------------
async def connect_ws(
    address: tuple[str, int],
    kind: str,
    connections: int,
    timings: Timings,
    recipients: tuple[str, ...],
    body: str,
    *,
    names: list[str] | None = None,
    password: str = "",
) -> list[LeanWs]:
    """``connections`` lean WebSockets to ``address``, ready to send ``body`` to
    ``recipients``: to a chat server (``kind`` CHAT: handshake with the product's path and
    subprotocol, then a SIGNUP of ``names[c]``), to ws_echo (ECHO: the handshake only) or to
    null_echo (NULL: nothing, null_echo knows no handshake)."""
    loop = asyncio.get_running_loop()
    host, port = address
    path, subprotocol = (PATH, SUBPROTOCOL) if kind == CHAT else ("/", None)
    uri = f"ws://{host}:{port}{path}"
    conns: list[LeanWs] = []
    try:
        for c in range(connections):
            _, conn = await loop.create_connection(
                lambda: LeanWs(timings, kind, uri, subprotocol), host, port
            )
            conns.append(conn)
            if kind != NULL:
                await conn.handshake()
            if kind == CHAT:
                assert names is not None
                await conn.call(1, rq.Signup(names[c], password))
            conn.sending(recipients, body)
    except BaseException:
        close(conns)
        raise
    return conns


# -- one load step ---------------------------------------------------------------------------
async def run_ws(
    job: dict[str, Any],
) -> tuple[Any, int | None, float | None, dict[str, float | None], str | None]:
    """One load step of this generator (bench/refs/lean_load.py ``run_lean_step``):
    ``ws_echo`` and ``null_echo`` (kind "echo") get connections without a sign-up."""
    spec = job["target"]
    if spec["kind"] != "echo" and not speaks_ws(spec["transport"]):
        raise ValueError(f"{spec['transport']} is not the websocket transport")

    async def echo(address: tuple[str, int], timings: Timings) -> Sequence[Sender]:
        kind = NULL if spec.get("ref") == "null_echo" else ECHO
        return await connect_ws(address, kind, job["connections"], timings, ("r",), job["body"])

    async def chat(
        address: tuple[str, int], names: list[str], password: str, recipient: str, t: Timings
    ) -> Sequence[Sender]:
        return await connect_ws(
            address, CHAT, len(names), t, (recipient,), job["body"], names=names, password=password
        )

    return await run_lean_step(job, echo, chat)


__all__ = ["CHAT", "ECHO", "NULL", "LeanWs", "connect_ws", "run_ws", "speaks_ws"]
