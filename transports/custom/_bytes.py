"""The bench's byte counter for the custom protocol (registry entry ``custom``).

PROTOCOL.md section 3: frame = length varint (the bytes after it) | opcode (1 byte) | request
id varint | body. :class:`VarintFrameAccount` splits one direction of a connection into such
frames with the codec's own varint reader; protobuf-tcp, which uses the same frames, reuses it.

Breakdown
    payload  the body: the positional fields, their own varint lengths and counts included
             (just as gRPC's payload includes protobuf's tags and lengths: "the encoded
             message").
    framing  the frame's length varint, opcode byte and request id varint.
    headers  always 0: the protocol has none.
    control  whole frames that are not a request, its response or a message push: HELLO,
             WELCOME, PING/PONG, and ERROR on request id 0 (connection errors and session-end
             notices, kind ``ERROR_NOTICE``).

:class:`CustomWireAccount` also hands each whole frame to the transport's sans-IO codec, which
must decode it to exactly one event: every byte counted is a byte the protocol accounts for.
"""

from __future__ import annotations

from transports._bytes import CONTROL, FRAMING, PAYLOAD, ByteAccount
from transports.custom._codec import OPCODE_OF, Connection, Role
from transports.custom._events import NEED_DATA, ConnectionClosed, Hello
from transports.custom._messages import read_varint
from transports.custom._wire import VARINT32_BYTES, VARINT64_BYTES, Opcode

#: Opcodes of frames that carry no request, response or push.
CONTROL_OPCODES = frozenset({Opcode.HELLO, Opcode.WELCOME, Opcode.PING, Opcode.PONG})


class VarintFrameAccount(ByteAccount):
    """Splits ``length varint | opcode | request id varint | body`` frames and classifies them.

    ``kind(opcode, request_id)`` names a frame; ``is_control(opcode, request_id)`` says
    whether the whole frame is control. ``check(frame)`` may verify a whole frame (the custom
    codec decodes it). The default naming is the custom protocol's opcode table.
    """

    def __init__(self) -> None:
        super().__init__()
        self._buffer = bytearray()

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> None:
        self._buffer += data
        buf, pos = self._buffer, 0
        while True:
            length, after_length = read_varint(buf, pos, len(buf), VARINT32_BYTES)
            if after_length < 0 or after_length + length > len(buf):
                break
            end = after_length + length
            if length < 2:
                raise ValueError(f"a {length}-byte frame has no room for opcode and request id")
            opcode = buf[after_length]
            request_id, body_at = read_varint(buf, after_length + 1, end, VARINT64_BYTES)
            if body_at < 0:
                raise ValueError("a frame ends inside its request id")
            self.check(bytes(buf[pos:end]))
            kind = self.kind(opcode, request_id)
            if self.is_control(opcode, request_id):
                self.count(kind, {CONTROL: end - pos})
            else:
                if request_id and opcode < 0x80:
                    self.last_ids["request"] = request_id
                self.count(kind, {FRAMING: body_at - pos, PAYLOAD: end - body_at})
            pos = end
        del buf[:pos]

    def check(self, frame: bytes) -> None:
        """Verify one whole frame (nothing by default)."""

    def kind(self, opcode: int, request_id: int) -> str:
        if opcode == Opcode.ERROR and request_id == 0:
            return "ERROR_NOTICE"  # not an answer to a request: a connection or session notice
        try:
            return Opcode(opcode).name
        except ValueError:
            return f"OPCODE_{opcode:#04x}"

    def is_control(self, opcode: int, request_id: int) -> bool:
        return opcode in CONTROL_OPCODES or (opcode == Opcode.ERROR and request_id == 0)


def frame_opcode(frame: bytes) -> int:
    """The opcode byte of one whole frame."""
    _, after_length = read_varint(bytearray(frame), 0, len(frame), VARINT32_BYTES)
    return frame[after_length]


class CustomWireAccount(VarintFrameAccount):
    """One direction of a custom-protocol connection, each frame checked by the codec."""

    #: The sans-IO codec that must decode every frame (protobuf-tcp substitutes its own).
    codec: type[Connection] = Connection

    def __init__(self, *, client_to_server: bool) -> None:
        super().__init__()
        self.client_to_server = client_to_server
        if client_to_server:
            self._codec = self.codec(Role.SERVER)  # reads what a server reads
        else:
            self._codec = self.codec(Role.CLIENT)
            # the client's HELLO went the other way (offering every version the codec
            # speaks, as the client does); expect WELCOME
            versions = self._codec.versions
            self._codec.send(Hello(versions[0], versions[-1]))

    def check(self, frame: bytes) -> None:
        self._codec.receive_data(frame)
        event = self._codec.next_event()
        if self._codec.buffered or event is NEED_DATA or isinstance(event, ConnectionClosed):
            raise ValueError(f"the codec did not read the {len(frame)}-byte frame as one event")
        if OPCODE_OF[type(event)] != frame_opcode(frame):
            raise ValueError(f"the codec read a {type(event).__name__} from another opcode")


def accounts() -> tuple[CustomWireAccount, CustomWireAccount]:
    """The (client-to-server, server-to-client) counters of one custom-protocol connection."""
    return CustomWireAccount(client_to_server=True), CustomWireAccount(client_to_server=False)


__all__ = ["CONTROL_OPCODES", "CustomWireAccount", "VarintFrameAccount", "accounts"]
