"""null_frames: custom's and protobuf-tcp's contracts served with no chat behind them: the
varint protocols' own floor, as bench/refs/null_chat.py is gRPC's.

tcp_echo answers raw length-prefixed bytes: the loop and the socket with nothing of a
contract in it. This server speaks a contract as a client needs it spoken
(transports/custom/PROTOCOL.md, transports/protobuf_tcp/PROTOCOL.md): varint frames, the
HELLO/WELCOME handshake (version 2, the one the bench's clients offer), and every request's
body read and every reply's body written in the protocol's own encoding: positional fields
for custom (its magic ``WC``), chat.proto's messages through the protobuf library for
protobuf-tcp (``WP``). It does nothing else: SIGNUP answers SIGNED_UP without storing an
account, SEND answers SENT with the next id and stores nothing. No wirechat code runs here
(bench/refs/hand_frames.py's framing, the messages generated from the .proto files), so what
a client measures against it, against the echo beside it, is what the contract costs before
a server does any work: the part of the gap to tcp_echo no server implementation can remove
(bench/latency.py run_independent pairs it with the echo and ChatClient; bench/targets.py
reports it beside issue 10's floor target).

Only what the bench's independent clients call is served (bench/refs/independent_aio.py
AioCustom, AioProtobufTcp: HELLO, SIGNUP, SEND). Anything else closes the connection.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from typing import cast

from bench.refs import hand_frames
from bench.refs.hand_frames import FrameReader, frame, read_varint, varint
from transports.grpc._generated import chat_pb2 as pb
from transports.protobuf_tcp._generated import frames_pb2

#: The version WELCOME names: the highest both sides speak (the bench's clients offer 1..2).
VERSION = 2
#: WELCOME's limits (custom section 4; protobuf-tcp's Welcome carries the same numbers).
MAX_FRAME, MAX_BODY, MAX_RECIPIENTS = 98304, 65536, 256
#: The conversation every SENT names (a real server's is the sender's and recipients').
CONVERSATION_ID = 1
MAGICS = {b"WC": "custom", b"WP": "protobuf-tcp"}


class _Custom:
    """custom's positional bodies (sections 6.2, 6.6, 7.1, 7.2, 7.6 of its PROTOCOL.md)."""

    @staticmethod
    def welcome() -> bytes:
        return bytes([VERSION]) + varint(MAX_FRAME) + varint(MAX_BODY) + varint(MAX_RECIPIENTS)

    @staticmethod
    def signed_up(body: bytes) -> bytes:
        _, at = _text(body, 0)  # the username
        _text(body, at)  # the password: read, as a server must, and not kept
        return varint(0)  # pending

    @staticmethod
    def sent(body: bytes, message_id: int) -> bytes:
        head = read_varint(body, 0)
        if head is None:
            raise ValueError("a SEND without a recipient count")
        count, at = head
        for _ in range(count):
            _, at = _text(body, at)
        _ = body[at:].decode()  # the body: the rest of the frame, UTF-8
        now = time.time_ns() // 1_000_000
        return varint(message_id) + varint(now) + varint(CONVERSATION_ID) + varint(0)


class _Protobuf:
    """chat.proto's messages through the protobuf library (protobuf-tcp's PROTOCOL.md)."""

    @staticmethod
    def welcome() -> bytes:
        return frames_pb2.Welcome(
            version=VERSION, max_frame=MAX_FRAME, max_body=MAX_BODY, max_recipients=MAX_RECIPIENTS
        ).SerializeToString()

    @staticmethod
    def signed_up(body: bytes) -> bytes:
        pb.SignupRequest.FromString(body)
        return pb.LoginReply(pending=0).SerializeToString()

    @staticmethod
    def sent(body: bytes, message_id: int) -> bytes:
        pb.SendRequest.FromString(body)
        return pb.SendReply(
            message_id=message_id,
            sent_at_ms=time.time_ns() // 1_000_000,
            conversation_id=CONVERSATION_ID,
        ).SerializeToString()


BODIES: dict[str, type[_Custom] | type[_Protobuf]] = {
    "custom": _Custom,
    "protobuf-tcp": _Protobuf,
}


def _text(body: bytes, at: int) -> tuple[str, int]:
    """custom's ``str`` at ``at``: (the text, where the next field starts)."""
    head = read_varint(body, at)
    if head is None or head[1] + head[0] > len(body):
        raise ValueError("a text field runs past its frame")
    size, start = head
    return body[start : start + size].decode(), start + size


class NullFrames(asyncio.Protocol):
    """One connection: frames in, each answered at once; the replies of one read in one write."""

    def __init__(self, ids: itertools.count[int]) -> None:
        self._ids = ids
        self._reader = FrameReader()
        self._bodies: type[_Custom] | type[_Protobuf] | None = None
        self._transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._transport = cast(asyncio.Transport, transport)

    def data_received(self, data: bytes) -> None:
        assert self._transport is not None
        self._reader.feed(data)
        out = bytearray()
        try:
            while (got := self._reader.next()) is not None:
                out += self._answer(*got)
        except Exception:  # not what the bench's clients send (no chat here): refused
            self._transport.close()
            return
        if out:
            self._transport.write(bytes(out))

    def _answer(self, opcode: int, request_id: int, body: bytes) -> bytes:
        bodies = self._bodies
        if opcode == hand_frames.HELLO:
            bodies = self._bodies = BODIES[MAGICS[body[:2]]]
            return frame(hand_frames.WELCOME, 0, bodies.welcome())
        if bodies is None:
            raise ValueError("a request before HELLO")
        if opcode == hand_frames.SEND:
            return frame(hand_frames.SENT, request_id, bodies.sent(body, next(self._ids)))
        if opcode == hand_frames.SIGNUP:
            return frame(hand_frames.SIGNED_UP, request_id, bodies.signed_up(body))
        raise ValueError(f"opcode {opcode:#x} is not served here")


async def start(host: str, port: int) -> tuple[asyncio.AbstractServer, int]:
    """Listen; returns the server and the bound port."""
    ids = itertools.count(1)
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: NullFrames(ids), host, port)
    return server, server.sockets[0].getsockname()[1]


__all__ = ["BODIES", "MAGICS", "NullFrames", "start"]
