"""The bench's byte counter for gRPC over HTTP/2 (registry entries ``grpc`` and ``grpc-stream``).

Frames are split and parsed by ``hyperframe`` (the framing layer of the ``h2`` library); this
module only decides what each byte is and whether its frame is a call's or the connection's.

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

Which frames are a call's (grpc-core 1.8x, chttp2 transport, observed frame by frame on
loopback for the unary and the bidi-stream transports)
    * A call's own frames: its HEADERS (request, response, trailers), CONTINUATION, DATA and
      RST_STREAM. Given the call and the HPACK state of a warm connection they are the same
      bytes every time: the bench's headline figure is exactly these.
    * The connection's frames (``CONNECTION_KINDS``), never in a call's headline:
      - PING and PING ACK (``TIMER_KINDS``): grpc-core's BDP estimator pings when DATA arrives
        once its timer (100 ms at first, growing) has run out, and at once on a new
        connection's first DATA; its keepalive pings an idle connection.
      - WINDOW_UPDATE on stream 0 and on a stream (``FLOW_KINDS``): grpc-core returns credit
        when its announce threshold or its BDP estimate says so
        (``TransportFlowControl::DesiredAnnounceSize(writing_anyway)``), often with the writer's
        next call rather than this one, merged with or split from other credit, and left out
        altogether when the window is still large. Even the stream credit that appears with
        almost every call is not written with every one (a steady grpc-stream ``send`` read
        30 B back in one run and 56 B in another: two 13-byte WINDOW_UPDATEs), so none of it
        is deterministic, and the criterion for a headline byte is determinism.
      - SETTINGS and SETTINGS ACK: after the handshake, grpc-core sends SETTINGS when its BDP
        estimate widens the initial window.
      - GOAWAY: the connection's end (a server's idle or age limit).
      The bench reports these bytes in rows of their own (bench/wire.py: per call over a long
      window of back-to-back calls, and per second). The ``connect`` operation is the
      connection's own set-up: its figure keeps every frame (preface, SETTINGS and their ACKs,
      the initial WINDOW_UPDATE).
    * HPACK makes a method's first call on a connection dearer (its ``:path`` and metadata go
      as literals once, then are indexed). The ``grpc-timeout`` header carries the deadline's
      remaining time as grpc-core computes it with its cached clock: a 10 s deadline goes out
      as ``10S`` or as ``10100m`` (3 bytes more), seen to change from call to call, and a value
      not yet in the HPACK table costs a literal of about 20 bytes. So the gRPC (unary)
      ``first`` rows may spread by 3 or about 20 bytes c2s (``*_range`` shows it). Steady
      calls come after 128 warm-up round trips, in which the values grpc-core writes have
      been indexed (one byte each, whichever it picks: seen with login's ``30S`` and
      ``30100m``, both 59-byte HEADERS); every steady row was the same in every call of
      every run measured. A value never written in the warm-up would still cost its literal
      once: the tests would then see a spread.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import ClassVar

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


class GrpcWireAccount(ByteAccount):
    """Counts one direction of a gRPC connection by category (see the module docstring).

    ``by_kind`` and ``frames`` map a frame kind (``DATA``, ``HEADERS``, ``WINDOW_UPDATE``,
    ``PING_ACK``, ``PREFACE``...) to bytes and to frames so far; ``messages`` counts gRPC
    messages begun.
    """

    TIMER_KINDS: ClassVar[frozenset[str]] = frozenset({"PING", "PING_ACK"})
    FLOW_KINDS: ClassVar[frozenset[str]] = frozenset({"WINDOW_UPDATE", "WINDOW_UPDATE_STREAM"})
    CONNECTION_KINDS: ClassVar[frozenset[str]] = (
        TIMER_KINDS | FLOW_KINDS | frozenset({"SETTINGS", "SETTINGS_ACK", "GOAWAY"})
    )

    def __init__(self, *, client_to_server: bool) -> None:
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
        elif isinstance(frame, _HEADER_FRAMES):
            self.count(kind, {HEADERS: size})
        else:
            self.count(kind, {CONTROL: size})
        if isinstance(frame, RstStreamFrame) or (
            isinstance(frame, DataFrame | HeadersFrame) and "END_STREAM" in frame.flags
        ):
            self._streams.pop(frame.stream_id, None)

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
    return GrpcWireAccount(client_to_server=True), GrpcWireAccount(client_to_server=False)


__all__ = [
    "CLIENT_PREFACE",
    "FRAME_HEADER_LEN",
    "FRAME_NAMES",
    "GRPC_PREFIX_LEN",
    "FrameSplitter",
    "GrpcWireAccount",
    "ProtocolViolation",
    "accounts",
    "frame_kind",
]
