"""The bench's byte counter for gRPC over HTTP/2 (registry entries ``grpc`` and ``grpc-stream``).

Frames are split and parsed by ``hyperframe`` (the framing layer of the ``h2`` library); this
module only decides what each byte is and which operation caused it.

HTTP/2 on the wire (RFC 9113): client -> server starts with the 24-byte preface
``PRI * HTTP/2.0...``; then both directions are frames of a 9-byte header (24-bit length, type,
flags, stream id) and a payload. gRPC (PROTOCOL-HTTP2.md in grpc/grpc) puts each message into
the DATA frames of its stream as a Length-Prefixed-Message: 1 byte compressed-flag, 4 bytes
big-endian length, then the protobuf bytes. A message may span DATA frames and a DATA frame may
hold several messages, so the prefix is tracked per stream, byte by byte.

Breakdown (every byte lands in exactly one category)
    payload  the protobuf bytes of each gRPC message (what ``SerializeToString()`` returned).
    framing  the 9-byte header of every DATA frame, the 5-byte gRPC message prefix, and DATA
             padding (grpc never pads, but a peer may).
    headers  whole HEADERS, CONTINUATION and PUSH_PROMISE frames, 9-byte header included:
             request headers, response headers and trailers, HPACK-compressed (so the first
             call on a connection, which fills the HPACK dynamic table, costs more).
    control  the client preface and whole SETTINGS, WINDOW_UPDATE, PING, RST_STREAM, GOAWAY,
             PRIORITY frames and frames of other types (counted under ``TYPE_0x..`` so none
             can hide).

Which frames a call causes (grpc-core 1.8x, chttp2 transport, as observed frame by frame on
loopback for the unary and the bidi-stream transports)
    * Deterministic, per call: the call's HEADERS, DATA and trailers, and flow-control credit
      for the DATA it carried. grpc-core returns credit when it writes anyway
      (``TransportFlowControl::DesiredAnnounceSize(writing_anyway)``): the server credits a
      request's DATA (connection and, on a long-lived stream, stream) in the same write as its
      reply; a client credits a reply's or a push's DATA in its *next* write, i.e. with its
      next call. Such a WINDOW_UPDATE belongs to the operation whose DATA it credits: one
      written in an operation in which its writer has received no DATA yet (on that stream,
      for a stream update) is moved, through ``moved``, to the latest operation in which it
      did. So each call carries exactly the credit for its own DATA, one 13-byte frame per
      window, whenever it is written.
    * Timer-driven (``TIMER_KINDS``): every PING and PING ACK. grpc-core's BDP estimator pings
      when DATA arrives once its timer (100 ms at first, growing) has run out, and at once on
      a new connection's first DATA; its keepalive pings an idle connection (once a minute for
      wirechat's server). The write that carries a PING or its ACK also flushes whatever
      credit is owed at that moment, often split (e.g. 9 + 5 bytes of credit in two frames
      where one would have carried 14), and any window growth the new BDP estimate allows, so
      the calls either side of such a write show extra, missing or split WINDOW_UPDATEs
      (``FLOW_KINDS``). The bench therefore takes its headline figures only from calls on
      whose connection no PING or PING ACK was written during the call, the quiet gaps either
      side of it, or the operation before it, and reports the PINGs, their ACKs and the
      WINDOW_UPDATE bytes beyond the deterministic count over a long window separately
      (bench/wire.py, the ``amortized`` rows).
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar, NamedTuple

from hyperframe.exceptions import HyperframeError
from hyperframe.frame import (
    ContinuationFrame,
    DataFrame,
    ExtensionFrame,
    Frame,
    HeadersFrame,
    PingFrame,
    PushPromiseFrame,
    RstStreamFrame,
    SettingsFrame,
    WindowUpdateFrame,
)

from transports._bytes import CONTROL, FRAMING, HEADERS, PAYLOAD, ByteAccount

CLIENT_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
FRAME_HEADER_LEN = 9
GRPC_PREFIX_LEN = 5  # compressed-flag (1) + message length (4, big-endian)

_HEADER_FRAMES = (HeadersFrame, ContinuationFrame, PushPromiseFrame)
#: RFC 9113 section 6 (and RFC 7838's ALTSVC, which hyperframe also knows).
FRAME_NAMES = {
    0x0: "DATA",
    0x1: "HEADERS",
    0x2: "PRIORITY",
    0x3: "RST_STREAM",
    0x4: "SETTINGS",
    0x5: "PUSH_PROMISE",
    0x6: "PING",
    0x7: "GOAWAY",
    0x8: "WINDOW_UPDATE",
    0x9: "CONTINUATION",
    0xA: "ALTSVC",
}


class ProtocolViolation(ValueError):
    """The bytes are not HTTP/2 (a bad preface, or a frame hyperframe refuses)."""


def frame_kind(frame: Frame) -> str:
    """``DATA``, ``HEADERS``, ``PING_ACK``, ``SETTINGS_ACK``, ``WINDOW_UPDATE`` (stream 0),
    ``WINDOW_UPDATE_STREAM``, ``TYPE_0x..`` for an extension frame, ..."""
    type_ = frame.type if frame.type is not None else -1
    name = None if isinstance(frame, ExtensionFrame) else FRAME_NAMES.get(type_)
    if name is None:
        return f"TYPE_{type_:#04x}"
    if isinstance(frame, PingFrame | SettingsFrame) and "ACK" in frame.flags:
        name += "_ACK"
    if isinstance(frame, WindowUpdateFrame) and frame.stream_id:
        name += "_STREAM"
    return name


class FrameSplitter:
    """Bytes in, whole hyperframe frames out, for one direction of one HTTP/2 connection.

    Each item is ``(frame, size on the wire)``, or ``(None, 24)`` for the client preface.
    ``pending`` is the number of bytes held back as an incomplete frame.
    """

    def __init__(self, *, expect_preface: bool) -> None:
        self._buffer = bytearray()
        self._need_preface = expect_preface

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def receive_data(self, data: bytes) -> list[tuple[Frame | None, int]]:
        self._buffer += data
        buf, pos = self._buffer, 0
        out: list[tuple[Frame | None, int]] = []
        if self._need_preface:
            have = min(len(buf), len(CLIENT_PREFACE))
            if bytes(buf[:have]) != CLIENT_PREFACE[:have]:
                raise ProtocolViolation(f"not an HTTP/2 client preface: {bytes(buf[:have])!r}")
            if have < len(CLIENT_PREFACE):
                return out
            self._need_preface = False
            out.append((None, len(CLIENT_PREFACE)))
            pos = len(CLIENT_PREFACE)
        view = memoryview(buf)
        try:
            # The length field is 24 bits, so one frame is at most 16 MiB + 9 bytes: that
            # bounds the buffer (SETTINGS_MAX_FRAME_SIZE is the peers' business; we count).
            while len(buf) - pos >= FRAME_HEADER_LEN:
                frame, length = Frame.parse_frame_header(view[pos : pos + FRAME_HEADER_LEN])
                end = pos + FRAME_HEADER_LEN + length
                if end > len(buf):
                    break
                frame.parse_body(view[pos + FRAME_HEADER_LEN : end])
                out.append((frame, end - pos))
                pos = end
        except HyperframeError as exc:
            raise ProtocolViolation(f"not a valid HTTP/2 frame: {exc}") from exc
        finally:
            view.release()
        del buf[:pos]
        return out


class _GrpcMessageReader:
    """Where one stream is within its sequence of gRPC Length-Prefixed-Messages."""

    __slots__ = ("length_bytes", "message_left", "prefix_left")

    def __init__(self) -> None:
        self.prefix_left = GRPC_PREFIX_LEN
        self.length_bytes = bytearray()
        self.message_left = 0

    def consume(self, data: bytes) -> tuple[int, int, int]:
        """Split DATA content into (prefix bytes, message bytes, messages begun)."""
        prefix = message = begun = pos = 0
        while pos < len(data):
            if self.prefix_left:
                take = min(self.prefix_left, len(data) - pos)
                first = GRPC_PREFIX_LEN - self.prefix_left  # byte 0 is the compressed flag
                self.length_bytes += data[pos : pos + take][max(0, 1 - first) :]
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
    """Shared by the two directions of one connection: which operation a WINDOW_UPDATE
    credits (see the module docstring). ``epoch`` is set by the bench."""

    def __init__(self) -> None:
        self.epoch = 0
        self._data_epoch: dict[bool, int] = {}  # receiver is the client? -> latest epoch
        self._stream_data_epoch: dict[tuple[bool, int], int] = {}

    def data_received(self, by_client: bool, stream_id: int) -> None:
        self._data_epoch[by_client] = self.epoch
        self._stream_data_epoch[(by_client, stream_id)] = self.epoch

    def stream_ended(self, stream_id: int) -> None:
        for side in (True, False):
            self._stream_data_epoch.pop((side, stream_id), None)

    def cause(self, frame: WindowUpdateFrame, by_client: bool) -> int:
        """The epoch whose DATA a WINDOW_UPDATE written by the client (``by_client``) credits."""
        if frame.stream_id == 0:
            epoch = self._data_epoch.get(by_client)
        else:
            epoch = self._stream_data_epoch.get((by_client, frame.stream_id))
        return self.epoch if epoch is None else epoch


class GrpcWireAccount(ByteAccount):
    """Counts one direction of a gRPC connection by category (see the module docstring).

    ``by_kind`` and ``frames`` map a frame kind (``DATA``, ``HEADERS``, ``WINDOW_UPDATE``,
    ``PING_ACK``, ``PREFACE``...) to bytes and to frames so far; ``messages`` counts gRPC
    messages begun. ``moved`` lists WINDOW_UPDATEs that an earlier epoch caused.
    """

    TIMER_KINDS: ClassVar[frozenset[str]] = frozenset({"PING", "PING_ACK"})
    FLOW_KINDS: ClassVar[frozenset[str]] = frozenset({"WINDOW_UPDATE", "WINDOW_UPDATE_STREAM"})

    def __init__(self, *, client_to_server: bool, state: GrpcConnectionState | None = None) -> None:
        self.state = state if state is not None else GrpcConnectionState()
        super().__init__()
        self.client_to_server = client_to_server
        self._splitter = FrameSplitter(expect_preface=client_to_server)
        self._streams: dict[int, _GrpcMessageReader] = OrderedDict()
        self.messages = 0

    @property
    def pending(self) -> int:
        return self._splitter.pending

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
        """The operation in progress, shared with the other direction of the connection."""
        return self.state.epoch

    @epoch.setter
    def epoch(self, value: int) -> None:
        self.state.epoch = value

    def receive_data(self, data: bytes) -> None:
        for frame, size in self._splitter.receive_data(data):
            if frame is None:
                self.count("PREFACE", {CONTROL: size})
            else:
                self._frame(frame, size)

    def _frame(self, frame: Frame, size: int) -> None:
        kind = frame_kind(frame)
        if isinstance(frame, DataFrame):
            self._data(frame, size)
            self.state.data_received(not self.client_to_server, frame.stream_id)
        elif isinstance(frame, _HEADER_FRAMES):
            self.count(kind, {HEADERS: size})
        else:
            self.count(kind, {CONTROL: size})
            if isinstance(frame, WindowUpdateFrame):
                cause = self.state.cause(frame, self.client_to_server)
                if cause != self.state.epoch:
                    self.moved.append(Reattributed(self.state.epoch, cause, CONTROL, kind, size))
        if isinstance(frame, RstStreamFrame) or (
            isinstance(frame, DataFrame | HeadersFrame) and "END_STREAM" in frame.flags
        ):
            self._streams.pop(frame.stream_id, None)
            if isinstance(frame, RstStreamFrame) or not self.client_to_server:
                self.state.stream_ended(frame.stream_id)  # gRPC: the server's end is the end

    def _data(self, frame: DataFrame, size: int) -> None:
        reader = self._streams.get(frame.stream_id)
        if reader is None:
            reader = self._streams[frame.stream_id] = _GrpcMessageReader()
        prefix, message, begun = reader.consume(frame.data)
        self.messages += begun
        self.count("DATA", {FRAMING: size - message, PAYLOAD: message})
        del prefix  # the frame header, any padding and the prefix are all framing


def accounts() -> tuple[GrpcWireAccount, GrpcWireAccount]:
    """The (client-to-server, server-to-client) counters of one gRPC connection."""
    state = GrpcConnectionState()
    return (
        GrpcWireAccount(client_to_server=True, state=state),
        GrpcWireAccount(client_to_server=False, state=state),
    )


__all__ = [
    "CLIENT_PREFACE",
    "FRAME_HEADER_LEN",
    "FRAME_NAMES",
    "GRPC_PREFIX_LEN",
    "FrameSplitter",
    "GrpcConnectionState",
    "GrpcWireAccount",
    "ProtocolViolation",
    "Reattributed",
    "accounts",
    "frame_kind",
]
