"""A sans-IO HTTP/2 frame splitter and the byte breakdown of one direction of a gRPC connection.

The wire bench (``bench/wire.py``) feeds every byte a counting relay saw into a
:class:`GrpcWireAccount` per direction and reads back how many of them were payload, framing,
headers and control. Nothing here opens a socket; the tests feed hand-built byte strings.

HTTP/2 on the wire (RFC 9113)
    client -> server starts with the 24-byte connection preface ``PRI * HTTP/2.0...``; after
    that both directions are a sequence of frames::

        +-----------------------------------------------+
        |                 Length (24)                   |
        +---------------+---------------+---------------+
        |   Type (8)    |   Flags (8)   |
        +-+-------------+---------------+-------------------------------+
        |R|                 Stream Identifier (31)                      |
        +=+=============================================================+
        |                   Frame Payload (Length octets)             ...
        +---------------------------------------------------------------+

    gRPC (PROTOCOL-HTTP2.md in grpc/grpc) puts each message into the DATA frames of its stream
    as a Length-Prefixed-Message: 1 byte compressed-flag, 4 bytes big-endian length, then the
    protobuf bytes. A message may span DATA frames and a DATA frame may hold several messages,
    so the prefix is tracked per stream, byte by byte.

Breakdown (every byte lands in exactly one category)
    payload  the protobuf bytes of each gRPC message (what ``SerializeToString()`` returned),
             excluding the 5-byte gRPC prefix.
    framing  the 9-byte frame header of every DATA frame, the 5-byte gRPC message prefix, and
             DATA padding (the pad-length octet and the pad; grpc never pads, but a peer may).
    headers  whole HEADERS, CONTINUATION and PUSH_PROMISE frames, 9-byte frame header included:
             request headers, response headers and trailers, HPACK-compressed (so the first call
             on a connection, which fills the HPACK dynamic table, costs more than later ones).
    control  the client preface and whole SETTINGS, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY and
             PRIORITY frames, and frames of unknown type (RFC 9113 says to ignore them; they are
             counted under their type number in ``by_kind`` so they cannot hide).

Late flow-control frames (which operation they belong to)
    A WINDOW_UPDATE returns credit for DATA its writer received; grpc-core's BDP estimator
    PINGs after DATA its writer received. grpc-core often writes them later than that DATA: the
    stream WINDOW_UPDATE for a pushed message rides on the receiver's next write (its next
    call), and BDP pings fire on a timer (100 ms at first, growing). The two directions of a
    connection therefore share a :class:`GrpcConnectionState` whose ``epoch`` the caller sets
    to the number of the operation in progress. A WINDOW_UPDATE or PING written in an epoch in
    which its writer has received no DATA yet (on that stream, for a stream-level update) is
    caused by the latest epoch in which it did; a PING ACK goes with the PING it answers
    (matched by the ping's 8 opaque bytes). Such frames are still counted where they arrived,
    and also listed in ``moved`` so that the caller can move their bytes to the operation
    that caused them. (A keepalive PING, sent on a timer whatever the traffic, is rare, once
    a minute at most for wirechat's server, and is counted the same way.)
"""

from __future__ import annotations

import enum
from collections import Counter, OrderedDict
from dataclasses import dataclass
from typing import NamedTuple

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9
GRPC_PREFIX_LEN = 5  # compressed-flag (1) + message length (4, big-endian)

PAYLOAD, FRAMING, HEADERS, CONTROL = "payload", "framing", "headers", "control"
CATEGORIES = (PAYLOAD, FRAMING, HEADERS, CONTROL)


class FrameType(enum.IntEnum):
    DATA = 0x0
    HEADERS = 0x1
    PRIORITY = 0x2
    RST_STREAM = 0x3
    SETTINGS = 0x4
    PUSH_PROMISE = 0x5
    PING = 0x6
    GOAWAY = 0x7
    WINDOW_UPDATE = 0x8
    CONTINUATION = 0x9


FLAG_END_STREAM = 0x1
FLAG_ACK = 0x1  # on SETTINGS and PING
FLAG_END_HEADERS = 0x4
FLAG_PADDED = 0x8

_HEADER_TYPES = frozenset({FrameType.HEADERS, FrameType.CONTINUATION, FrameType.PUSH_PROMISE})


class ProtocolViolation(ValueError):
    """The bytes are not HTTP/2 (a bad preface, or a DATA frame whose padding overruns it)."""


@dataclass(frozen=True, slots=True)
class Preface:
    """The 24-byte client connection preface."""

    size: int = len(CLIENT_PREFACE)


@dataclass(frozen=True, slots=True)
class Frame:
    """One whole HTTP/2 frame as it was on the wire."""

    type: int  # a FrameType value, or any other number for an extension frame
    flags: int
    stream_id: int
    payload: bytes

    @property
    def size(self) -> int:
        """Bytes on the wire: the 9-byte header plus the payload."""
        return FRAME_HEADER_LEN + len(self.payload)

    @property
    def kind(self) -> str:
        """The type's name (``PING``, ``PING_ACK``, ``SETTINGS_ACK``) or ``TYPE_0x..``."""
        try:
            name = FrameType(self.type).name
        except ValueError:
            return f"TYPE_{self.type:#04x}"
        if self.type in (FrameType.PING, FrameType.SETTINGS) and self.flags & FLAG_ACK:
            name += "_ACK"
        return name


def encode_frame(type_: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame's bytes (for tests and hand-built vectors)."""
    return (
        len(payload).to_bytes(3, "big")
        + bytes((type_, flags))
        + (stream_id & 0x7FFFFFFF).to_bytes(4, "big")
        + payload
    )


class FrameSplitter:
    """Bytes in, whole frames out, for one direction of one HTTP/2 connection.

    ``receive_data`` may be called with any chunking; a frame is returned once all of it has
    arrived. ``pending`` is the number of bytes held back as an incomplete frame: at a quiet
    moment of a healthy connection it is 0, which is how the bench knows that it is not cutting
    a frame in two when it attributes bytes to an operation.
    """

    def __init__(self, *, expect_preface: bool) -> None:
        self._buffer = bytearray()
        self._need_preface = expect_preface

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[Frame | Preface]:
        self._buffer += data
        out: list[Frame | Preface] = []
        buf = self._buffer
        pos = 0
        if self._need_preface:
            have = min(len(buf), len(CLIENT_PREFACE))
            if bytes(buf[:have]) != CLIENT_PREFACE[:have]:
                raise ProtocolViolation(f"not an HTTP/2 client preface: {bytes(buf[:have])!r}")
            if have < len(CLIENT_PREFACE):
                return out
            self._need_preface = False
            out.append(Preface())
            pos = len(CLIENT_PREFACE)
        # The length field is 24 bits, so one frame is at most 16 MiB + 9 bytes: that bounds the
        # buffer. (SETTINGS_MAX_FRAME_SIZE is the peers' business; we only count.)
        while len(buf) - pos >= FRAME_HEADER_LEN:
            length = int.from_bytes(buf[pos : pos + 3], "big")
            end = pos + FRAME_HEADER_LEN + length
            if end > len(buf):
                break
            stream_id = int.from_bytes(buf[pos + 5 : pos + 9], "big") & 0x7FFFFFFF
            payload = bytes(buf[pos + FRAME_HEADER_LEN : end])
            out.append(Frame(buf[pos + 3], buf[pos + 4], stream_id, payload))
            pos = end
        del buf[:pos]
        return out


class _GrpcMessageReader:
    """Where one stream is within its sequence of gRPC Length-Prefixed-Messages."""

    __slots__ = ("length_bytes", "message_left", "prefix_left")

    def __init__(self) -> None:
        self.prefix_left = GRPC_PREFIX_LEN
        self.length_bytes = bytearray()
        self.message_left = 0

    def consume(self, data: memoryview | bytes) -> tuple[int, int, int]:
        """Split DATA content into (prefix bytes, message bytes, messages begun)."""
        prefix = message = begun = 0
        pos = 0
        while pos < len(data):
            if self.prefix_left:
                take = min(self.prefix_left, len(data) - pos)
                # byte 0 of the prefix is the compressed flag; bytes 1-4 are the length
                first = GRPC_PREFIX_LEN - self.prefix_left
                chunk = bytes(data[pos : pos + take])
                self.length_bytes += chunk[max(0, 1 - first) :]
                self.prefix_left -= take
                prefix += take
                pos += take
                if not self.prefix_left:
                    begun += 1
                    self.message_left = int.from_bytes(self.length_bytes, "big")
                    self.length_bytes.clear()
                    if not self.message_left:
                        self.prefix_left = GRPC_PREFIX_LEN  # an empty message
            else:
                take = min(self.message_left, len(data) - pos)
                self.message_left -= take
                message += take
                pos += take
                if not self.message_left:
                    self.prefix_left = GRPC_PREFIX_LEN
        return prefix, message, begun


class Reattributed(NamedTuple):
    """A frame counted in epoch ``counted_in`` that epoch ``epoch`` caused."""

    counted_in: int
    epoch: int
    category: str
    kind: str
    size: int


class GrpcConnectionState:
    """Shared by the two directions of one connection: who caused a late control frame.

    See "Late flow-control frames" in the module docstring. ``epoch`` is set by the caller.
    """

    #: PINGs remembered until their ACK; a peer that never acks cannot grow this without bound.
    MAX_OPEN_PINGS = 64

    def __init__(self) -> None:
        self.epoch = 0
        self._data_epoch: dict[bool, int] = {}  # receiver is the client? -> latest epoch
        self._stream_data_epoch: dict[tuple[bool, int], int] = {}
        self._ping_epoch: OrderedDict[bytes, int] = OrderedDict()

    def data_received(self, by_client: bool, stream_id: int) -> None:
        self._data_epoch[by_client] = self.epoch
        self._stream_data_epoch[(by_client, stream_id)] = self.epoch

    def stream_ended(self, stream_id: int) -> None:
        for side in (True, False):
            self._stream_data_epoch.pop((side, stream_id), None)

    def cause(self, frame: Frame, by_client: bool) -> int:
        """The epoch that caused ``frame``, written by the client if ``by_client``."""
        if frame.type == FrameType.WINDOW_UPDATE:
            if frame.stream_id == 0:
                epoch = self._data_epoch.get(by_client)
            else:
                epoch = self._stream_data_epoch.get((by_client, frame.stream_id))
            return self.epoch if epoch is None else epoch
        if frame.type == FrameType.PING:
            if frame.flags & FLAG_ACK:
                return self._ping_epoch.pop(frame.payload, self.epoch)
            epoch = self._data_epoch.get(by_client, self.epoch)
            self._ping_epoch[frame.payload] = epoch
            if len(self._ping_epoch) > self.MAX_OPEN_PINGS:
                self._ping_epoch.popitem(last=False)
            return epoch
        return self.epoch


def grpc_accounts() -> tuple[GrpcWireAccount, GrpcWireAccount]:
    """The (client-to-server, server-to-client) accounts of one gRPC connection."""
    state = GrpcConnectionState()
    return (
        GrpcWireAccount(client_to_server=True, state=state),
        GrpcWireAccount(client_to_server=False, state=state),
    )


class GrpcWireAccount:
    """Counts one direction of a gRPC connection by category (see the module docstring).

    ``totals`` maps each of ``CATEGORIES`` to bytes so far; ``by_kind`` maps a frame kind
    (``DATA``, ``HEADERS``, ``WINDOW_UPDATE``, ``PING_ACK``, ``PREFACE``...) to bytes so far;
    ``frames`` counts frames by kind. Their sums equal ``parsed``; ``parsed + pending`` equals
    every byte fed in. A WINDOW_UPDATE is ``WINDOW_UPDATE`` on the connection (stream 0) and
    ``WINDOW_UPDATE_STREAM`` on a stream. ``moved`` lists late control frames caused by an
    earlier epoch (see the module docstring); the caller empties it.
    """

    def __init__(self, *, client_to_server: bool, state: GrpcConnectionState | None = None) -> None:
        self.client_to_server = client_to_server
        self.state = state if state is not None else GrpcConnectionState()
        self.moved: list[Reattributed] = []
        self._splitter = FrameSplitter(expect_preface=client_to_server)
        self._streams: dict[int, _GrpcMessageReader] = {}
        self.totals: Counter[str] = Counter(dict.fromkeys(CATEGORIES, 0))
        self.by_kind: Counter[str] = Counter()
        self.frames: Counter[str] = Counter()
        self.messages = 0  # gRPC messages whose 5-byte prefix has been read

    @property
    def pending(self) -> int:
        return self._splitter.pending

    @property
    def parsed(self) -> int:
        return sum(self.totals.values())

    @property
    def open_messages(self) -> int:
        """Streams in the middle of a gRPC message (0 when every message sent was whole)."""
        return sum(
            1
            for reader in self._streams.values()
            if reader.message_left or reader.prefix_left != GRPC_PREFIX_LEN
        )

    @property
    def epoch(self) -> int:
        return self.state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.state.epoch = value

    def receive_data(self, data: bytes) -> None:
        for item in self._splitter.receive_data(data):
            if isinstance(item, Preface):
                self._count("PREFACE", CONTROL, item.size)
            else:
                self._frame(item)

    def _count(self, kind: str, category: str, size: int) -> None:
        self.totals[category] += size
        self.by_kind[kind] += size
        self.frames[kind] += 1

    def _frame(self, frame: Frame) -> None:
        if frame.type == FrameType.DATA:
            self._data(frame)
            self.state.data_received(not self.client_to_server, frame.stream_id)
        elif frame.type in _HEADER_TYPES:
            self._count(frame.kind, HEADERS, frame.size)
        else:
            kind = frame.kind
            if frame.type == FrameType.WINDOW_UPDATE and frame.stream_id:
                kind = "WINDOW_UPDATE_STREAM"
            self._count(kind, CONTROL, frame.size)
            cause = self.state.cause(frame, self.client_to_server)
            if cause != self.state.epoch:
                self.moved.append(Reattributed(self.state.epoch, cause, CONTROL, kind, frame.size))
        if frame.type == FrameType.RST_STREAM or (
            frame.type in (FrameType.DATA, FrameType.HEADERS) and frame.flags & FLAG_END_STREAM
        ):
            self._streams.pop(frame.stream_id, None)
            if frame.type == FrameType.RST_STREAM or not self.client_to_server:
                self.state.stream_ended(frame.stream_id)  # gRPC: the server's end is the end

    def _data(self, frame: Frame) -> None:
        content = memoryview(frame.payload)
        overhead = FRAME_HEADER_LEN
        if frame.flags & FLAG_PADDED:
            if not content:
                raise ProtocolViolation("a PADDED DATA frame with no pad-length octet")
            pad = content[0]
            if 1 + pad > len(content):
                raise ProtocolViolation("DATA padding longer than the frame")
            overhead += 1 + pad
            content = content[1 : len(content) - pad]
        reader = self._streams.get(frame.stream_id)
        if reader is None:
            reader = self._streams[frame.stream_id] = _GrpcMessageReader()
        prefix, message, begun = reader.consume(content)
        self.messages += begun
        self.totals[FRAMING] += overhead + prefix
        self.totals[PAYLOAD] += message
        self.by_kind["DATA"] += frame.size
        self.frames["DATA"] += 1


__all__ = [
    "CATEGORIES",
    "CLIENT_PREFACE",
    "CONTROL",
    "FRAME_HEADER_LEN",
    "FRAMING",
    "GRPC_PREFIX_LEN",
    "HEADERS",
    "PAYLOAD",
    "Frame",
    "FrameSplitter",
    "FrameType",
    "GrpcConnectionState",
    "GrpcWireAccount",
    "Preface",
    "ProtocolViolation",
    "Reattributed",
    "encode_frame",
    "grpc_accounts",
]
