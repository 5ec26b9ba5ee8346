"""The sans-IO codec of the custom protocol: bytes in, events out; events in, bytes out.

Theory of operation (PROTOCOL.md is the authority; section numbers refer to it)
  * A frame is ``length`` (varint, the bytes that follow) + ``opcode`` (u8) + ``request_id``
    (varint) + a positional body (section 3). ``next_event`` first reads the length alone, so
    an oversized frame is refused before its body is buffered; it then waits until the whole
    frame is buffered and decodes it in one pass (``_messages``). Every field read is bounded
    by the frame's end: a field that runs past it is MALFORMED, and bytes left after the last
    field too.
  * The receive buffer is one ``bytearray`` plus a read offset. Decoding copies only the
    strings it returns; consumed bytes are dropped when the buffer empties (cheap) or when the
    offset passes ``_COMPACT_AT``, so a steady pipelined stream is never re-copied whole.
  * The handshake is a table, ``HANDSHAKE[(phase, kind)] -> phase``, walked by both sides on
    both send and receive (the conversation is the same one seen from either end). A pair
    missing from the table is BAD_HANDSHAKE. One rule sits outside the table: an ERROR whose
    code closes the connection (``closes(code)``) moves to CLOSED, where nothing is allowed.
  * Versions (section 5): every version has its own pair of message tables (``MESSAGES``).
    A connection starts on version 1's, which every version shares for HELLO, WELCOME and
    ERROR (and a client's requests pipelined behind its HELLO); the negotiated version's
    tables take over when the server reads HELLO / the client reads WELCOME. So a version 1
    connection neither sends nor accepts anything version 2 added (UNKNOWN_OPCODE), and
    DELIVER takes the layout of the negotiated version.
  * A ``ProtocolError`` from ``next_event`` is final for the receiving direction: it is raised
    again on every later call. Sending still works, but only an ERROR, so that a server can
    answer the garbage before it closes.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from typing import Any, Protocol

from transports.custom._events import (
    NEED_DATA,
    ConnectionClosed,
    Event,
    Hello,
    NeedData,
    Welcome,
)
from transports.custom._messages import (
    KIND_OF_OPCODE,
    MESSAGES,
    OPCODE_OF,
    Decoder,
    Encoder,
    FrameReader,
    Kind,
    read_varint,
)
from transports.custom._wire import (
    MAX_FRAME,
    PROTOCOL_VERSION,
    S2C_SLACK,
    SUPPORTED_VERSIONS,
    U32_MAX,
    VARINT32_BYTES,
    ErrorCode,
    LocalProtocolError,
    Opcode,
    ProtocolError,
    closes,
    put_varint,
)

#: Drop consumed bytes from the front of the receive buffer once this many have piled up.
_COMPACT_AT = 64 * 1024
_SMALL_VARINTS = [bytes((i,)) for i in range(0x80)]


class Role(enum.Enum):
    CLIENT = "client"
    SERVER = "server"


class Phase(enum.Enum):
    START = "start"  # nothing exchanged yet
    GREETED = "greeted"  # HELLO sent/received, WELCOME not yet
    OPEN = "open"  # handshake done
    CLOSED = "closed"  # a connection-ending ERROR was sent or received


HANDSHAKE: dict[tuple[Phase, Kind], Phase] = {
    (Phase.START, Kind.HELLO): Phase.GREETED,
    (Phase.START, Kind.ERROR): Phase.START,  # a server refusing garbage sent before HELLO
    (Phase.GREETED, Kind.REQUEST): Phase.GREETED,  # requests pipelined behind HELLO
    (Phase.GREETED, Kind.WELCOME): Phase.OPEN,
    (Phase.GREETED, Kind.ERROR): Phase.GREETED,  # UNSUPPORTED_VERSION
    (Phase.OPEN, Kind.REQUEST): Phase.OPEN,
    (Phase.OPEN, Kind.RESPONSE): Phase.OPEN,
    (Phase.OPEN, Kind.ERROR): Phase.OPEN,
}


class Codec(Protocol):
    """What the asyncio drivers (``_server``, ``_client``) need from a codec: this module's
    ``Connection``, or another body encoding in the same frames (``transports.protobuf_tcp``).

    It yields and accepts the events of ``_events``, walks the same handshake, and raises
    ``ProtocolError`` (the peer broke the protocol) / ``LocalProtocolError`` (we cannot send
    that) with the ``ErrorCode`` of the broken rule, as ``Connection`` does.
    """

    #: The negotiated protocol version; None until HELLO (server) / WELCOME (client).
    version: int | None
    #: The versions this codec speaks, lowest to highest (a client offers them in HELLO).
    versions: tuple[int, ...]

    #: Bytes received but not yet returned as events (the server counts them).
    buffered: int

    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side."""
        ...

    def next_event(self) -> Event | NeedData:
        """The next event, ``NEED_DATA``, or ``ConnectionClosed`` after a clean end."""
        ...

    def send(self, event: Event) -> bytes:
        """The bytes of one frame carrying ``event``."""
        ...

    def limit_frames(self, max_frame: int | None) -> None:
        """(Server) accept frames of at most ``max_frame`` bytes from now on, refusing a
        longer one at its header (None: the limit given at creation again)."""
        ...


#: Makes the codec of one side of one connection: ``Connection`` is one.
CodecFactory = Callable[[Role], Codec]


def choose_version(
    min_version: int, max_version: int, supported: tuple[int, ...] = SUPPORTED_VERSIONS
) -> int | None:
    """The highest version both sides speak, or None (section 5)."""
    common = [v for v in supported if min_version <= v <= max_version]
    return max(common) if common else None


def _decoders(specs: tuple[Any, ...]) -> dict[int, Decoder]:
    return {int(opcode): decoder for opcode, _, _, decoder, _ in specs}


def _encoders(specs: tuple[Any, ...]) -> dict[type, tuple[int, Encoder]]:
    return {cls: (int(opcode), encoder) for opcode, cls, _, _, encoder in specs}


def _by_phase(specs: tuple[Any, ...]) -> dict[Phase, dict[int, Phase]]:
    """HANDSHAKE, keyed for the hot path: phase -> {opcode allowed in it: the next phase}."""
    return {
        phase: {
            int(opcode): HANDSHAKE[(phase, kind)]
            for opcode, _, kind, _, _ in specs
            if (phase, kind) in HANDSHAKE
        }
        for phase in Phase
    }


# version -> role -> table
_RECEIVES = {
    v: {Role.SERVER: _decoders(c2s), Role.CLIENT: _decoders(s2c)}
    for v, (c2s, s2c) in MESSAGES.items()
}
_SENDS = {
    v: {Role.SERVER: _encoders(s2c), Role.CLIENT: _encoders(c2s)}
    for v, (c2s, s2c) in MESSAGES.items()
}
_RECEIVABLE = {
    v: {Role.SERVER: _by_phase(c2s), Role.CLIENT: _by_phase(s2c)}
    for v, (c2s, s2c) in MESSAGES.items()
}
_SENDABLE = {
    v: {Role.SERVER: _by_phase(s2c), Role.CLIENT: _by_phase(c2s)}
    for v, (c2s, s2c) in MESSAGES.items()
}
_HELLO, _WELCOME, _ERROR = int(Opcode.HELLO), int(Opcode.WELCOME), int(Opcode.ERROR)
_HANDSHAKE_OPCODES = frozenset((_HELLO, _WELCOME, _ERROR))  # (sending one may change the phase)


class Connection:
    """One side of one connection. Feed it bytes, take events; give it events, take bytes.

    ``max_frame`` is the largest frame a server accepts. A client accepts the server's limit
    (from WELCOME) plus S2C_SLACK, the most a SENT reply can exceed its SEND by (section 4).
    ``versions`` are the protocol versions it speaks (a subclass with other message tables
    narrows them, or overrides ``_use_version``).
    """

    versions: tuple[int, ...] = SUPPORTED_VERSIONS

    def __init__(self, role: Role, *, max_frame: int = MAX_FRAME) -> None:
        self.role = role
        self._tables_version = PROTOCOL_VERSION  # whose tables are in use
        self.phase = Phase.START  # also sets _receivable and _sendable
        self.version: int | None = None
        #: Largest frame we accept, and largest we may send.
        self.max_frame = max_frame if role is Role.SERVER else max_frame + S2C_SLACK
        self._full_max_frame = self.max_frame  # (``limit_frames(None)`` restores it)
        self.peer_max_frame = MAX_FRAME if role is Role.CLIENT else MAX_FRAME + S2C_SLACK
        self._offer: tuple[int, int] | None = None  # the HELLO we sent, to check WELCOME
        self._buf = bytearray()
        self._pos = 0  # the first unconsumed byte of _buf
        #: Bytes received but not yet returned as events: ``len(_buf) - _pos``, kept as a
        #: plain attribute (the server reads it for every request; a property cost a call).
        self.buffered = 0
        self._eof = False
        self._error: ProtocolError | None = None
        self._reader = FrameReader()
        self._decoders = _RECEIVES[PROTOCOL_VERSION][role]
        self._encoders = _SENDS[PROTOCOL_VERSION][role]

    def __repr__(self) -> str:
        return f"<Connection {self.role.value} {self.phase.value}>"

    @property
    def phase(self) -> Phase:
        """Where the handshake stands (the HANDSHAKE table)."""
        return self._phase

    @phase.setter
    def phase(self, phase: Phase) -> None:
        self._phase = phase
        self._receivable = _RECEIVABLE[self._tables_version][self.role][phase]
        self._sendable = _SENDABLE[self._tables_version][self.role][phase]

    # -- receiving ---------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Add bytes from the peer; ``b""`` means the peer closed its side."""
        if self._error is not None:
            raise self._error
        if not data:
            self._eof = True
            return
        if self._eof:
            raise RuntimeError("receive_data after the end of the stream")
        buf, pos = self._buf, self._pos
        if pos:
            if pos == len(buf):  # (all of it consumed, the usual case: start over)
                buf[:] = data
                self._pos = 0
                self.buffered = len(data)
                return
            if pos >= _COMPACT_AT:
                del buf[:pos]
                self._pos = pos = 0
        buf += data
        self.buffered = len(buf) - pos

    def next_event(self) -> Event | NeedData:
        """The next event, ``NEED_DATA``, or ``ConnectionClosed`` after a clean end of stream.

        Raises ProtocolError, and keeps raising it, once the peer broke the protocol.
        """
        # (One method where there were two: it runs twice per request, and a Python call
        # costs about as much as the framing work itself.)
        if self._error is not None:
            raise self._error
        buf, pos = self._buf, self._pos
        size = len(buf)
        if pos >= size:
            return ConnectionClosed() if self._eof else NEED_DATA
        try:
            length = buf[pos]
            start = pos + 1
            if length >= 0x80:
                length, start = read_varint(buf, pos, size, VARINT32_BYTES)
                if start < 0:
                    return self._incomplete()
                if length > U32_MAX:
                    raise ProtocolError(ErrorCode.MALFORMED, "frame length exceeds 2^32-1")
            if length > self.max_frame:
                raise ProtocolError(ErrorCode.FRAME_TOO_LARGE, self._too_large(length))
            if length < 2:
                raise ProtocolError(
                    ErrorCode.MALFORMED, "a frame holds at least an opcode and an id"
                )
            end = start + length
            if end > size:
                return self._incomplete()
            # The frame: its opcode must be allowed in this phase, then its body's decoder
            # reads the fields (written out here: a Python call less on every request).
            opcode = buf[start]
            next_phase = self._receivable.get(opcode)
            if next_phase is None:
                raise self._unexpected(opcode)
            reader = self._reader
            rid = buf[start + 1]  # (the request id, reader.v32() inlined for ids below 128:
            if rid < 0x80:  # a frame holds at least an opcode and an id byte, checked above)
                reader.buf, reader.pos, reader.end = buf, start + 2, end  # (reader.reset)
            else:
                reader.buf, reader.pos, reader.end = buf, start + 1, end
                rid = reader.v32()
            event = self._decoders[opcode](reader, rid)
            if reader.pos != end:
                raise ProtocolError(
                    ErrorCode.MALFORMED, f"{end - reader.pos} unexpected bytes after the last field"
                )
            if opcode in _HANDSHAKE_OPCODES:
                next_phase = self._received_handshake(opcode, event, next_phase)
            if next_phase is not self._phase:
                self.phase = next_phase
        except ProtocolError as exc:
            self._error = exc
            raise
        self._pos = end
        self.buffered = size - end
        return event

    def _too_large(self, length: int) -> str:
        if self.max_frame < self._full_max_frame:  # (``limit_frames``: before a login)
            return (
                f"frame of {length} bytes exceeds the limit of {self.max_frame} before a "
                f"login ({self._full_max_frame} after)"
            )
        return f"frame of {length} bytes exceeds the limit of {self.max_frame}"

    def limit_frames(self, max_frame: int | None) -> None:
        """(Server) accept frames of at most ``max_frame`` bytes from now on, refusing a
        longer one at its header (None: the limit given at creation again). The server
        keeps frames small until a login (``ServerLimits.max_frame_before_login``)."""
        full = self._full_max_frame
        self.max_frame = full if max_frame is None else min(max_frame, full)

    def _incomplete(self) -> NeedData:
        if self._eof:
            raise ProtocolError(ErrorCode.MALFORMED, "connection closed in the middle of a frame")
        return NEED_DATA

    def _received_handshake(self, opcode: int, event: Any, next_phase: Phase) -> Phase:
        """After reading a HELLO, WELCOME or ERROR: negotiate, or close (the next phase)."""
        if opcode == _ERROR:
            if closes(event.code):
                return Phase.CLOSED
        elif opcode == _HELLO:
            self._negotiate(event)
        else:
            self._welcomed(event)
        return next_phase

    def _unexpected(self, opcode: int) -> ProtocolError:
        """Why ``opcode`` may not arrive now (section 3 gives the order of the checks)."""
        if self._phase is Phase.START and self.role is Role.SERVER:
            return ProtocolError(ErrorCode.BAD_HANDSHAKE, "the first frame must be HELLO")
        if opcode not in self._decoders:
            return ProtocolError(ErrorCode.UNKNOWN_OPCODE, f"unknown opcode 0x{opcode:02X}")
        return ProtocolError(
            ErrorCode.BAD_HANDSHAKE,
            f"{KIND_OF_OPCODE[opcode].value} is not allowed in phase {self._phase.value}",
        )

    def _negotiate(self, hello: Hello) -> None:
        version = choose_version(hello.min_version, hello.max_version, self.versions)
        if version is None:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"client speaks versions {hello.min_version}..{hello.max_version}; this server "
                f"speaks {', '.join(map(str, self.versions))}",
            )
        self._use_version(version)

    def _use_version(self, version: int) -> None:
        """Speak ``version`` from now on: its message tables take over (section 5)."""
        self.version = version
        if version != self._tables_version and version in _RECEIVES:
            self._tables_version = version
            self._decoders = _RECEIVES[version][self.role]
            self._encoders = _SENDS[version][self.role]
            self.phase = self._phase  # (re-reads the phase tables of this version)

    def _welcomed(self, welcome: Welcome) -> None:
        low, high = self._offer or (0, 0)
        if not low <= welcome.version <= high:
            raise ProtocolError(
                ErrorCode.UNSUPPORTED_VERSION,
                f"server chose version {welcome.version}, outside the offered {low}..{high}",
            )
        self._use_version(welcome.version)
        self.peer_max_frame = welcome.max_frame
        self.max_frame = welcome.max_frame + S2C_SLACK

    # -- sending -----------------------------------------------------------------------------
    def _cannot_send(self, event: Any) -> str:
        opcode = OPCODE_OF.get(type(event))
        if opcode is not None and (opcode < 0x80) == (self.role is Role.CLIENT):
            return (
                f"{opcode.name} is not part of protocol version {self.version or 1}, which "
                "this connection speaks (the server offered no later version)"
            )
        return f"a {self.role.value} does not send {type(event).__name__}"

    def send(self, event: Any) -> bytes:
        """The bytes of one frame carrying ``event``.

        Raises LocalProtocolError if the event cannot be sent now or cannot be expressed on
        the wire (``code`` says which rule, e.g. FRAME_TOO_LARGE).
        """
        spec = self._encoders.get(type(event))
        if spec is None:
            raise LocalProtocolError(ErrorCode.UNKNOWN_OPCODE, self._cannot_send(event))
        opcode, encode = spec
        next_phase = self._sendable.get(opcode)
        if next_phase is None or (
            self._error is not None and self._refuses_after_error(event, opcode)
        ):
            raise self._refused(event, opcode)
        out = bytearray((opcode,))
        encode(event, out)
        size = len(out)
        if size > self.peer_max_frame:
            raise LocalProtocolError(
                ErrorCode.FRAME_TOO_LARGE,
                f"a frame of {size} bytes exceeds the peer's limit of {self.peer_max_frame}",
            )
        if opcode in _HANDSHAKE_OPCODES:
            self._sent_handshake(opcode, event, next_phase)
        elif next_phase is not self._phase:
            self.phase = next_phase
        if size < 0x80:
            return _SMALL_VARINTS[size] + out
        head = bytearray()
        put_varint(head, size)
        return bytes(head) + out

    def _refuses_after_error(self, event: Any, opcode: int) -> bool:
        """Once the peer broke the protocol, what may still be sent: the ERROR that ends the
        connection and, by a server, the replies (request id > 0) to the requests it read
        before the broken frame, which it answers first (a pipelined SEND still waiting for its
        commit: its SENT means stored, section 8). Nothing else: no push, no new request."""
        if opcode == _ERROR:
            return False
        return self.role is not Role.SERVER or not getattr(event, "request_id", 0)

    def _refused(self, event: Any, opcode: int) -> LocalProtocolError:
        """Why ``event`` cannot be sent now (the peer broke the protocol, or the phase)."""
        if self._error is not None and self._refuses_after_error(event, opcode):
            return LocalProtocolError(self._error.code, "the peer broke the protocol; send ERROR")
        return LocalProtocolError(
            ErrorCode.BAD_HANDSHAKE,
            f"cannot send {type(event).__name__} in phase {self.phase.value}",
        )

    def _sent_handshake(self, opcode: int, event: Any, next_phase: Phase) -> None:
        """The phase (and version) after sending a HELLO, WELCOME or ERROR."""
        if opcode == _ERROR:
            if closes(event.code):
                next_phase = Phase.CLOSED
        elif opcode == _HELLO:
            self._offer = (event.min_version, event.max_version)
        if next_phase is not self._phase:
            self.phase = next_phase
        if opcode == _WELCOME and event.version != self.version:
            self._use_version(event.version)


__all__ = [
    "HANDSHAKE",
    "NEED_DATA",
    "OPCODE_OF",
    "Codec",
    "CodecFactory",
    "Connection",
    "Kind",
    "Phase",
    "Role",
    "choose_version",
]
