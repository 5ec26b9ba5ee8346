"""The sans-IO codec of protobuf-tcp: the custom protocol's codec with protobuf bodies.

Theory of operation (PROTOCOL.md beside this file is the authority)
  * Everything but the bodies is the custom protocol's, and so is the code: ``Connection`` is
    ``transports.custom.Connection`` (framing, limits, request ids, the handshake table, the
    sticky ProtocolError, the events) running this transport's message table (``_bodies``)
    instead of the positional one. Same opcodes, same kinds, so the custom handshake table and
    its checks apply as they are.
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
from transports.protobuf_tcp._bodies import CLIENT_MESSAGES, MAGIC, SERVER_MESSAGES

_ERROR = int(Opcode.ERROR)
# The custom protocol's positional ERROR coders, for the refusal of a HELLO.
_CUSTOM_DECODE_ERROR, _CUSTOM_ENCODE_ERROR = next(
    (dec, enc) for op, _, _, dec, enc in _CUSTOM_SERVER if op == Opcode.ERROR
)
# The custom handshake table is keyed by opcode and kind, so ours are the custom protocol's
# (tests/unit/test_protobuf_tcp_codec.py checks the two tables agree).
_RECEIVES = {
    Role.SERVER: {int(op): dec for op, _, _, dec, _ in CLIENT_MESSAGES},
    Role.CLIENT: {int(op): dec for op, _, _, dec, _ in SERVER_MESSAGES},
}
_SENDS = {
    Role.SERVER: {cls: (int(op), enc) for op, cls, _, _, enc in SERVER_MESSAGES},
    Role.CLIENT: {cls: (int(op), enc) for op, cls, _, _, enc in CLIENT_MESSAGES},
}


class Connection(_CustomConnection):
    """One side of one protobuf-tcp connection; the interface of ``transports.custom.Connection``.

    Feed it bytes (``receive_data``), take events (``next_event``: an event, ``NEED_DATA`` or
    ``ConnectionClosed``; raises ``ProtocolError``); give it events, take bytes (``send``).
    """

    #: Version 1 only until _bodies carries the version 2 messages (history, read state,
    #: deletion): a client offering 1..2 is answered with version 1 (custom PROTOCOL.md
    #: section 5), so it never sends or expects a message this table lacks.
    versions: tuple[int, ...] = (1,)

    def __init__(self, role: Role, *, max_frame: int = MAX_FRAME) -> None:
        super().__init__(role, max_frame=max_frame)
        # The custom codec looks its coders up in these two dicts (per connection, so the
        # ERROR entries can be bound to this connection's phase).
        self._decoders = dict(_RECEIVES[role])
        self._encoders = dict(_SENDS[role])
        if role is Role.CLIENT:
            self._pb_decode_error = self._decoders[_ERROR]
            self._decoders[_ERROR] = self._decode_error
        else:
            self._pb_encode_error = self._encoders[Error][1]
            self._encoders[Error] = (_ERROR, self._encode_error)

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
