"""The sans-IO codec of protobuf-tcp: the custom protocol's codec with protobuf bodies.

Theory of operation (PROTOCOL.md beside this file is the authority)
  * Everything but the bodies is the custom protocol's, and so is the code: ``Connection`` is
    ``transports.custom.Connection`` (framing, limits, request ids, the handshake table, the
    sticky ProtocolError, the events) running this transport's message table (``_bodies``)
    instead of the positional one. Same opcodes, same kinds, so the custom handshake table and
    its checks apply as they are.
  * Versions (custom PROTOCOL.md section 5): protobuf-tcp speaks 1 to 4, each with its
    own message tables (``_bodies_v3.MESSAGES``; 3 adds account security, issue 13; 4 only
    the error code OVERLOADED, with 3's tables). The
    custom ``Connection._use_version`` would install the custom protocol's positional tables
    of the negotiated version, so ``_use_version`` is overridden to install ours; the phase
    tables (which opcode is allowed when) stay the custom protocol's of that version, since
    the opcodes and kinds are the same.
  * Two frames keep the custom layout, so that a peer of the other protocol is refused in words
    it can read (section 3 of PROTOCOL.md): HELLO (with the magic "WP" instead of "WC"), and an
    ERROR that comes before WELCOME on the server's stream (the refusal of a HELLO). Which
    layout an ERROR has is decided by the phase: a server sends, and a client reads, the custom
    layout until WELCOME has been sent / received, protobuf from then on. Both sides agree,
    because WELCOME is the first frame of the server's stream unless the HELLO is refused.
"""

from __future__ import annotations

from transports.custom._codec import Connection as _CustomConnection
from transports.custom._codec import Phase, Role
from transports.custom._events import Error
from transports.custom._messages import SERVER_MESSAGES as _CUSTOM_SERVER
from transports.custom._messages import FrameReader
from transports.custom._wire import MAX_FRAME, Opcode
from transports.protobuf_tcp._bodies import MAGIC
from transports.protobuf_tcp._bodies_v3 import MESSAGES

_ERROR = int(Opcode.ERROR)
# The custom protocol's positional ERROR coders, for the refusal of a HELLO.
_CUSTOM_DECODE_ERROR, _CUSTOM_ENCODE_ERROR = next(
    (dec, enc) for op, _, _, dec, enc in _CUSTOM_SERVER if op == Opcode.ERROR
)
# The custom handshake table is keyed by opcode and kind, so ours are the custom protocol's
# (tests/unit/test_protobuf_tcp_codec.py checks the two tables agree). version -> role -> table.
_RECEIVES = {
    v: {
        Role.SERVER: {int(op): dec for op, _, _, dec, _ in c2s},
        Role.CLIENT: {int(op): dec for op, _, _, dec, _ in s2c},
    }
    for v, (c2s, s2c) in MESSAGES.items()
}
_SENDS = {
    v: {
        Role.SERVER: {cls: (int(op), enc) for op, cls, _, _, enc in s2c},
        Role.CLIENT: {cls: (int(op), enc) for op, cls, _, _, enc in c2s},
    }
    for v, (c2s, s2c) in MESSAGES.items()
}


class Connection(_CustomConnection):
    """One side of one protobuf-tcp connection; the interface of ``transports.custom.Connection``.

    Feed it bytes (``receive_data``), take events (``next_event``: an event, ``NEED_DATA`` or
    ``ConnectionClosed``; raises ``ProtocolError``); give it events, take bytes (``send``).
    """

    #: Version 1 (the first edition's messages), 2 (history, read marks, deletion), 3
    #: (resume tokens, change password, deletion with the password) and 4 (the error code
    #: OVERLOADED): custom's versions, whose error codes it shares.
    versions: tuple[int, ...] = (1, 2, 3, 4)

    def __init__(self, role: Role, *, max_frame: int = MAX_FRAME) -> None:
        super().__init__(role, max_frame=max_frame)
        # Both versions share the protobuf ERROR coders (it is the same message in both).
        self._pb_decode_error = _RECEIVES[1][Role.CLIENT][_ERROR]
        self._pb_encode_error = _SENDS[1][Role.SERVER][Error][1]
        self._install(self._tables_version)

    def _install(self, version: int) -> None:
        """Put ``version``'s coders in the two dicts the custom codec looks them up in (per
        connection, so the ERROR entries can be bound to this connection's phase)."""
        self._decoders = dict(_RECEIVES[version][self.role])
        self._encoders = dict(_SENDS[version][self.role])
        if self.role is Role.CLIENT:
            self._decoders[_ERROR] = self._decode_error
        else:
            self._encoders[Error] = (_ERROR, self._encode_error)

    def _use_version(self, version: int) -> None:
        """Speak ``version`` from now on: our tables of it, never the custom protocol's
        positional ones (which the inherited method would install)."""
        self.version = version
        if version != self._tables_version:
            self._tables_version = version
            self._install(version)
            self.phase = self._phase  # (re-reads the custom phase tables of this version)

    def __repr__(self) -> str:
        return f"<protobuf-tcp Connection {self.role.value} {self.phase.value}>"

    def _decode_error(self, reader: FrameReader, rid: int) -> Error:
        if self.phase is Phase.OPEN:
            return self._pb_decode_error(reader, rid)
        return _CUSTOM_DECODE_ERROR(reader, rid)

    def _encode_error(self, event: Error, out: bytearray) -> None:
        # Before WELCOME (START: refusing a HELLO) the ERROR is the custom protocol's.
        if self.phase is Phase.START or self.phase is Phase.GREETED:
            _CUSTOM_ENCODE_ERROR(event, out)
        else:
            self._pb_encode_error(event, out)


__all__ = ["MAGIC", "Connection", "Phase", "Role"]
