"""The varint frames of custom and protobuf-tcp, written by hand from their contracts
(transports/custom/PROTOCOL.md sections 2-3 and 6-7, transports/protobuf_tcp/PROTOCOL.md), for
the independent clients (bench/refs/independent.py, bench/refs/independent_aio.py). None of
the product's codec: a stranger's few lines, so the clients cross-check it.

A frame is ``length (varint) | opcode (u8) | request_id (varint) | body``; the two protocols
differ in the HELLO's magic and in how a body is written (positional fields, or a chat.proto
message). Sans-IO: bytes in, frames out.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from transports.grpc._generated import chat_pb2

HELLO, SIGNUP, SEND = 0x01, 0x02, 0x06
WELCOME, SIGNED_UP, SENT, ERROR = 0x81, 0x82, 0x86, 0xFF


def varint(value: int) -> bytes:
    """Unsigned LEB128 (custom section 2), as protobuf's varint."""
    out = bytearray()
    while value > 0x7F:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def text(value: str) -> bytes:
    """custom's ``str``: a varint byte length, then the UTF-8 bytes."""
    data = value.encode()
    return varint(len(data)) + data


def frame(opcode: int, request_id: int, body: bytes) -> bytes:
    head = bytes([opcode]) + varint(request_id)
    return varint(len(head) + len(body)) + head + body


def read_varint(data: bytes | bytearray, at: int) -> tuple[int, int] | None:
    """The varint at ``at`` and the index after it, or None if ``data`` ends inside it."""
    value, shift = 0, 0
    while at < len(data):
        byte = data[at]
        value |= (byte & 0x7F) << shift
        at, shift = at + 1, shift + 7
        if byte < 0x80:
            return value, at
    return None


@dataclass
class FrameReader:
    """Bytes in (``feed``), whole frames out (``next``: ``(opcode, request_id, body)``)."""

    buffer: bytearray = field(default_factory=bytearray)

    def feed(self, data: bytes) -> None:
        self.buffer += data

    def next(self) -> tuple[int, int, bytes] | None:
        buf = self.buffer
        head = read_varint(buf, 0)
        if head is None or len(buf) < head[1] + head[0]:
            return None
        length, at = head
        opcode = buf[at]
        rid = read_varint(buf, at + 1)
        if rid is None or rid[1] > at + length:
            raise RuntimeError("a frame's request id runs past its length")
        body = bytes(buf[rid[1] : at + length])
        del buf[: at + length]
        return opcode, rid[0], body


class Bodies:
    """How one protocol writes the bodies the clients need."""

    MAGIC = b""

    def hello(self) -> bytes:
        return frame(HELLO, 0, self.MAGIC + bytes([1, 2]))  # versions 1..2 (custom section 5)

    def signup(self, username: str, password: str) -> bytes:
        raise NotImplementedError

    def send(self, recipient: str, body: str) -> bytes:
        raise NotImplementedError

    def sent_id(self, body: bytes) -> int:
        """The message id a SENT body carries."""
        raise NotImplementedError


class CustomBodies(Bodies):
    """Positional fields (custom sections 6.2, 6.6, 7.6)."""

    MAGIC = b"WC"

    def signup(self, username: str, password: str) -> bytes:
        return text(username) + text(password)

    def send(self, recipient: str, body: str) -> bytes:
        return varint(1) + text(recipient) + body.encode()

    def sent_id(self, body: bytes) -> int:
        got = read_varint(body, 0)  # SENT starts with message_id (v64), then sent_at_ms
        if got is None:
            raise RuntimeError("a SENT without a message id")
        return got[0]


class ProtobufBodies(Bodies):
    """chat.proto's messages (protobuf-tcp section 2)."""

    MAGIC = b"WP"

    def signup(self, username: str, password: str) -> bytes:
        return chat_pb2.SignupRequest(username=username, password=password).SerializeToString()

    def send(self, recipient: str, body: str) -> bytes:
        return chat_pb2.SendRequest(recipients=[recipient], body=body).SerializeToString()

    def sent_id(self, body: bytes) -> int:
        return int(chat_pb2.SendReply.FromString(body).message_id)


#: Each protocol's bodies.
BODIES: dict[str, Bodies] = {"custom": CustomBodies(), "protobuf-tcp": ProtobufBodies()}

__all__ = ["BODIES", "Bodies", "FrameReader", "frame", "read_varint", "text", "varint"]
